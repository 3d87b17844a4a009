"""A bounded JSON parser: valid UTF-8, plain JSON (no NaN/Infinity), at most ``MAX_DEPTH``
levels of nesting, no lone surrogates (``"\\ud800"`` decodes to a string that cannot be
stored or encoded again). Each refusal has its own stable code.

Here in protocol/ so both ways in share it: the API's request bodies (relay/web/jsonbody.py)
and the signalling messages (protocol/messages.py)."""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32
"""Far deeper than any request body of this API (two levels), far below the recursion limit."""


class BodyError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _nesting(text: str) -> int:
    """The deepest nesting of brackets outside strings (checked before parsing, so a deep
    body never reaches the recursive parser)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _check_strings(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise BodyError("bad_unicode", "the body holds a lone surrogate escape") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def parse_json(raw: bytes | str) -> Any:
    if isinstance(raw, str):
        text = raw
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BodyError("bad_json", "the body is not valid UTF-8 JSON") from None
    if _nesting(text) > MAX_DEPTH:
        raise BodyError("json_too_deep", f"the body nests deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise BodyError("bad_json", "the body is not valid JSON") from None
    _check_strings(value)
    return value
