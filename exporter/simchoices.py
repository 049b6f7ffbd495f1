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
LINK_FORMS = ("current", "legacy")
FRANCHISE_SHAPES = ("new", "old")
