"""Accessibility audit in Chromium: axe-core (npm, pinned in package-lock.json, installed by
``make test`` with ``npm ci``) injected into a page; serious and critical violations fail."""

from __future__ import annotations

import json
from pathlib import Path

AXE = Path(__file__).parent.parent / "node_modules" / "axe-core" / "axe.min.js"
FAILING = ("serious", "critical")
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


async def audit(page, context: str = "document") -> list[dict]:
    """The serious and critical violations on the page (WCAG 2.2 AA rules)."""
    assert AXE.exists(), "axe-core is missing: run `npm ci` (make test does)"
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.add_script_tag(content=AXE.read_text("utf-8"))
    result = await page.evaluate(
        "async ([ctx, tags]) => await axe.run(ctx === 'document' ? document : ctx,"
        " {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})",
        [context, WCAG],
    )
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]][:5],
        }
        for v in result["violations"]
        if v["impact"] in FAILING
    ]


async def assert_accessible(page, where: str) -> None:
    found = await audit(page)
    assert not found, f"{where}: {json.dumps(found, indent=1)}"
