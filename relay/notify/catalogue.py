"""The Python reader of the app's string catalogues (relay/web/static/i18n/*.json): one
catalogue per language for the family app and the emails, so a translator edits one file."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

CATALOGUES = Path(__file__).parent.parent / "web" / "static" / "i18n"
LANGUAGES = ("en", "cy")
DEFAULT_LANGUAGE = "en"


@functools.cache
def catalogue(language: str) -> dict[str, str]:
    if language not in LANGUAGES:
        language = DEFAULT_LANGUAGE
    return json.loads((CATALOGUES / f"{language}.json").read_text("utf-8"))


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


def text(language: str, key: str, **params: Any) -> str:
    """The string for ``key`` (English when the language lacks it), with ``{params}`` filled."""
    raw = catalogue(language).get(key) or catalogue(DEFAULT_LANGUAGE)[key]
    return raw.format_map(_Blank(params))


def render_email(language: str, template: str, params: dict[str, Any]) -> tuple[str, str]:
    """(subject, plain-text body) of one email."""
    if "reason" in params and not params["reason"]:
        params = {**params, "reason": text(language, "reason.none")}
    subject = text(language, f"email.{template}.subject", **params)
    body = "\n\n".join(
        [
            text(language, "email.greeting", **params),
            text(language, f"email.{template}.body", **params),
            text(language, "email.signoff"),
        ]
    )
    return subject, body
