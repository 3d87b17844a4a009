"""A self-contained SVG of CPU against calls, one line per system (no plotting library)."""

from __future__ import annotations

import math
from html import escape
from typing import Any

COLOURS = {"relay": "#1b7837", "naive": "#c51b7d", "janus": "#2166ac"}
W, H = 720, 440
LEFT, RIGHT, TOP, BOTTOM = 70, 170, 40, 60


def _nice_max(value: float) -> float:
    if value <= 0:
        return 100.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if step * exp >= value:
            return step * exp
    return 10 * exp


def svg(systems: dict[str, dict[str, Any]], title: str = "Server process CPU against concurrent calls (same load)") -> str:
    series = {
        name: [p for p in s.get("points", []) if p.get("cpu_pct") is not None]
        for name, s in systems.items()
        if not s.get("skipped")
    }
    calls = sorted({p["calls"] for pts in series.values() for p in pts}) or [1]
    ymax = _nice_max(max([100.0] + [p["cpu_pct"] for pts in series.values() for p in pts]) * 1.05)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    # x: log2 of calls, evenly spaced doublings
    lo, hi = math.log2(calls[0]), math.log2(calls[-1])
    span = hi - lo or 1.0

    def x(n: float) -> float:
        return LEFT + (math.log2(n) - lo) / span * pw if hi > lo else LEFT + pw / 2

    def y(v: float) -> float:
        return TOP + ph - v / ymax * ph

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    # grid and y axis
    for i in range(6):
        v = ymax * i / 5
        yy = y(v)
        out.append(f'<line x1="{LEFT}" y1="{yy:.1f}" x2="{LEFT + pw}" y2="{yy:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 8}" y="{yy + 4:.1f}" text-anchor="end">{v:g}</text>')
    one_core = y(100.0)
    out.append(
        f'<line x1="{LEFT}" y1="{one_core:.1f}" x2="{LEFT + pw}" y2="{one_core:.1f}" '
        'stroke="#888" stroke-dasharray="6 4"/>'
    )
    out.append(f'<text x="{LEFT + pw - 4}" y="{one_core - 5:.1f}" text-anchor="end" fill="#666">one core</text>')
    for n in calls:
        xx = x(n)
        out.append(f'<line x1="{xx:.1f}" y1="{TOP + ph}" x2="{xx:.1f}" y2="{TOP + ph + 5}" stroke="#333"/>')
        out.append(f'<text x="{xx:.1f}" y="{TOP + ph + 20}" text-anchor="middle">{n}</text>')
    out.append(
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + ph}" stroke="#333"/>'
        f'<line x1="{LEFT}" y1="{TOP + ph}" x2="{LEFT + pw}" y2="{TOP + ph}" stroke="#333"/>'
    )
    out.append(f'<text x="{LEFT + pw / 2}" y="{H - 18}" text-anchor="middle">concurrent calls (log scale)</text>')
    out.append(
        f'<text transform="translate(18 {TOP + ph / 2}) rotate(-90)" text-anchor="middle">'
        "process CPU, % of one core</text>"
    )
    # lines
    legend_y = TOP + 10
    for name, pts in series.items():
        colour = COLOURS.get(name, "#444")
        pts = sorted(pts, key=lambda p: p["calls"])
        if len(pts) > 1:
            path = " ".join(f"{x(p['calls']):.1f},{y(p['cpu_pct']):.1f}" for p in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for p in pts:
            ok = p.get("valid") and p.get("healthy")
            fill = colour if ok else "white"
            tip = f"{name} {p['calls']} calls: {p['cpu_pct']:.1f}% ({'ok' if ok else 'invalid or unhealthy'})"
            out.append(
                f'<circle cx="{x(p["calls"]):.1f}" cy="{y(p["cpu_pct"]):.1f}" r="4.5" fill="{fill}" '
                f'stroke="{colour}" stroke-width="2"><title>{escape(tip)}</title></circle>'
            )
        lx = LEFT + pw + 20
        out.append(f'<line x1="{lx}" y1="{legend_y}" x2="{lx + 24}" y2="{legend_y}" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<circle cx="{lx + 12}" cy="{legend_y}" r="4" fill="{colour}"/>')
        out.append(f'<text x="{lx + 32}" y="{legend_y + 4}">{escape(name)}</text>')
        legend_y += 22
    lx = LEFT + pw + 20
    out.append(f'<circle cx="{lx + 12}" cy="{legend_y}" r="4" fill="white" stroke="#444" stroke-width="2"/>')
    out.append(f'<text x="{lx + 32}" y="{legend_y + 4}">invalid or</text>')
    out.append(f'<text x="{lx + 32}" y="{legend_y + 18}">unhealthy point</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
