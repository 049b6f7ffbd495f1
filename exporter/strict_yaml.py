"""PyYAML's safe loader, refusing a key given twice; in a module of its own so that only a
process that reads a modules file imports PyYAML."""

from __future__ import annotations

from typing import Any

import yaml

YAMLError = yaml.YAMLError


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice (PyYAML would keep the last silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, (str, int, float, bool)):
                    continue  # an unhashable key is refused by the checks after loading
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, "a key is given twice", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load(text: str) -> Any:
    return yaml.load(text, Loader=StrictLoader)  # a SafeLoader
