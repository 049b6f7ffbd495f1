"""Pure parsers for the JWT Pizza service's and factory's JSON answers.

Each takes decoded JSON (any value) and returns plain data or raises :class:`ShapeError`, the
only exception they raise. The journey maps a ShapeError to the reason ``bad_response``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

from .redact import RecoveryLink, scrub

# The names the chaos-ending link has had, newest first (see shared/jwt-pizza-api.md).
CHAOS_LINK_KEYS = (
    "followLinkToEndChaos",
    "reportSlowPizzaToFactoryUrl",
    "reportPizzaCreationErrorToPizzaFactoryUrl",
    "reportErrorToPizzaFactoryUrl",
    "reportUrl",
)


class ShapeError(ValueError):
    """An answer did not have the documented shape. The message is safe to log."""


@dataclasses.dataclass(frozen=True)
class MenuItem:
    id: int
    title: str
    price: float


@dataclasses.dataclass(frozen=True)
class Store:
    franchise_id: int
    store_id: int


@dataclasses.dataclass(frozen=True)
class OrderAnswer:
    order_id: int | None
    jwt: str
    message: str
    link: RecoveryLink | None


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A JSON number a float can hold: not a bool, not NaN or infinite, not a 400-digit int."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def health_version(data: Any) -> str:
    """The service version from ``GET /``; ``unknown`` if the fork does not say."""
    if not isinstance(data, dict):
        raise ShapeError("health answer is not a JSON object")
    version = data.get("version")
    if isinstance(version, (str, int, float)) and not isinstance(version, bool):
        text = str(version).strip()
        if text and len(text) <= 64 and text.isprintable():
            return text
    return "unknown"


def login_token(data: Any) -> str:
    if not isinstance(data, dict):
        raise ShapeError("login answer is not a JSON object")
    token = data.get("token")
    if not isinstance(token, str) or not token:
        raise ShapeError("login answer has no token")
    if not isinstance(data.get("user"), dict):
        raise ShapeError("login answer has no user")
    return token


def cheapest_menu_item(data: Any) -> MenuItem:
    if not isinstance(data, list):
        raise ShapeError("menu is not a JSON list")
    items = [
        item
        for item in data
        if isinstance(item, dict) and _is_id(item.get("id")) and _is_number(item.get("price"))
    ]
    if not items:
        raise ShapeError("menu has no item with an id and a price")
    best = min(items, key=lambda item: (item["price"], item["id"]))
    title = best.get("title")
    return MenuItem(id=best["id"], title=title[:100] if isinstance(title, str) else "",
                    price=float(best["price"]))


def first_store(data: Any) -> Store:
    """The first franchise with a store, from either shape of ``GET /api/franchise``."""
    if isinstance(data, dict):
        franchises = data.get("franchises")  # forks since May 2025
    else:
        franchises = data  # older forks: a bare list
    if not isinstance(franchises, list):
        raise ShapeError("franchise answer is neither a list nor {franchises: [...]}")
    for franchise in franchises:
        if not isinstance(franchise, dict) or not _is_id(franchise.get("id")):
            continue
        stores = franchise.get("stores")
        if not isinstance(stores, list):
            continue
        for store in stores:
            if isinstance(store, dict) and _is_id(store.get("id")):
                return Store(franchise_id=franchise["id"], store_id=store["id"])
    raise ShapeError("no franchise has a store")


def chaos_link(data: Any) -> RecoveryLink | None:
    """The chaos-ending link under any of its four names, or None."""
    if not isinstance(data, dict):
        return None
    for key in CHAOS_LINK_KEYS:
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return RecoveryLink(value.strip(), key)
    return None


def message(data: Any, secrets: Iterable[str] = ()) -> str:
    """The ``message`` (or older ``msg``) of an answer, ``secrets`` and URLs redacted, cut
    short, or ''."""
    if isinstance(data, dict):
        for key in ("message", "msg"):
            if isinstance(data.get(key), str):
                return scrub(data[key], secrets)
    return ""


def order_answer(data: Any) -> OrderAnswer:
    """A 200 answer to ``POST /api/order``: the order with its id and the pizza JWT."""
    if not isinstance(data, dict):
        raise ShapeError("order answer is not a JSON object")
    order = data.get("order")
    if not isinstance(order, dict) or not _is_id(order.get("id")):
        raise ShapeError("order answer has no order id")
    jwt = data.get("jwt")
    if not isinstance(jwt, str) or not jwt:
        raise ShapeError("order answer has no jwt")
    return OrderAnswer(order_id=order["id"], jwt=jwt, message=message(data), link=chaos_link(data))


def docs_factory(data: Any) -> str | None:
    """The factory URL the service names in ``GET /api/docs`` (``config.factory``), or None
    when the answer does not say (older forks have no such field)."""
    if not isinstance(data, dict):
        raise ShapeError("docs answer is not a JSON object")
    config = data.get("config")
    factory = config.get("factory") if isinstance(config, dict) else None
    if isinstance(factory, str) and factory.strip():
        return factory.strip()
    return None


def logout_ok(data: Any) -> None:
    """``DELETE /api/auth`` answers ``{"message": "logout successful"}``; forks word the message
    differently, so only the shape is checked."""
    if not isinstance(data, dict):
        raise ShapeError("logout answer is not a JSON object")


def verify_valid(data: Any) -> bool:
    """True if the factory's verify answer says the JWT is valid."""
    if not isinstance(data, dict):
        raise ShapeError("verify answer is not a JSON object")
    return data.get("message") == "valid"
