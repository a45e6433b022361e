"""JSON read from a request nests at most API_JSON_MAX_DEPTH levels.

Python's parser raises RecursionError (a 500) at about a thousand levels, and code that walks
what it parsed (serializers, templates, `json.dumps`) recurses too; so bodies and fields are
refused well before that, with a message the caller can act on.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings


class TooDeep(ValueError):
    """The JSON nests deeper than the limit (a ValueError, as any other unreadable JSON)."""


def max_depth() -> int:
    return int(getattr(settings, "API_JSON_MAX_DEPTH", 64))


def depth_message(limit: int, what: str = "The JSON body") -> str:
    return f"{what} nests deeper than {limit} levels."


def too_deep(value: Any, limit: int) -> bool:
    """Whether `value` nests lists and objects more than `limit` levels (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def loads(text: str | bytes, **kwargs: Any) -> Any:
    """`json.loads`, raising TooDeep (never RecursionError) past the nesting limit."""
    limit = max_depth()
    try:
        value = json.loads(text, **kwargs)
    except RecursionError:
        raise TooDeep(depth_message(limit, "The JSON")) from None
    if too_deep(value, limit):
        raise TooDeep(depth_message(limit, "The JSON"))
    return value
