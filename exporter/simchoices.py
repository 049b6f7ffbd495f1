"""The simulator's choices (chaos modes, link keys and forms, franchise shapes), in a module of
their own so that the command line can list them in its options without importing the
simulator: ``serve`` loads only what it runs."""

from __future__ import annotations

CHAOS_MODES = ("fail", "throttle", "badjwt")
# The 200 key selects a fork age; the 500 key follows from it (see the API contract).
LINK_KEYS = {
    "followLinkToEndChaos": ("followLinkToEndChaos", "followLinkToEndChaos"),
    "reportSlowPizzaToFactoryUrl": ("reportSlowPizzaToFactoryUrl",
                                    "reportPizzaCreationErrorToPizzaFactoryUrl"),
    "reportErrorToPizzaFactoryUrl": ("reportErrorToPizzaFactoryUrl", "reportErrorToPizzaFactoryUrl"),
    "reportUrl": ("reportUrl", "reportUrl"),
}
# Every name the link has had, 200 and 500 keys alike: --link-key takes either name of a pair.
LINK_KEY_NAMES = tuple(dict.fromkeys(name for pair in LINK_KEYS.values() for name in pair))


def link_key_pair(name: str) -> tuple[str, str]:
    """The (200 key, 500 key) pair of the fork age that used ``name`` for either answer.
    ValueError for a name no fork used."""
    for pair in LINK_KEYS.values():
        if name in pair:
            return pair
    raise ValueError(f"unknown link key {name!r}")


LINK_FORMS = ("current", "legacy")
FRANCHISE_SHAPES = ("new", "old")
