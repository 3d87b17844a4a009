"""The one JSON body parser of the API: bounded depth and size, valid UTF-8, no lone
surrogates, each refusal with a stable code. The parser itself lives in protocol/jsonsafe.py
so the signalling messages go through the very same checks."""

from protocol.jsonsafe import MAX_DEPTH, BodyError, parse_json

__all__ = ["MAX_DEPTH", "BodyError", "parse_json"]
