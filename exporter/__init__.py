"""pizza-probe: a Prometheus exporter and synthetic prober for JWT Pizza deployments."""

import sys
import warnings

__version__ = "0.1.0"

# requests imports a character-set detector (charset_normalizer: about 4 MiB resident, an
# eighth of `serve`'s) that pizza-probe never calls: it reads every body as bytes and decodes
# UTF-8 JSON itself, never through Response.text. Imported before requests (as the commands
# are), requests is left without one; its Response.text would then assume UTF-8.
if "requests" not in sys.modules:
    sys.modules.setdefault("charset_normalizer", None)  # type: ignore[arg-type]
    sys.modules.setdefault("chardet", None)  # type: ignore[arg-type]
    warnings.filterwarnings("ignore", "Unable to find acceptable character detection")
