"""The API's JSON parser: DRF's, with a nesting limit.

Python's JSON decoder recurses once per level: a body of 50,000 nested `[` raises RecursionError,
which DRF does not catch (a 500 with a trace). No request body of this API is more than a few levels
deep, so anything deeper than MAX_JSON_DEPTH is refused as a parse error (400, `parse_error`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_JSON_DEPTH = 32
TOO_DEEP = f"JSON parse error - nested more than {MAX_JSON_DEPTH} levels deep"


def json_too_deep(value: Any, *, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when arrays/objects nest more than `limit` levels (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class LimitedJSONParser(JSONParser):
    """JSONParser that answers too deep a body with ParseError (400) instead of RecursionError (500)."""

    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:  # as DRF's stubs say; the API's serializers refuse a top-level array
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(TOO_DEEP) from None
        if json_too_deep(data):
            raise ParseError(TOO_DEEP)
        return data
