"""SVG drawings rendered on the server: the DAG coloured by task state, and the Gantt chart of attempts.

Every name that reaches the markup is escaped (task names come from users' YAML). Colours are
CSS classes `s-<STATE>`, so the page's script recolours a node by changing its class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape

from easysched_es.web.layout import NODE_H, NODE_W, layout

LABEL_CHARS = 20
GANTT_ROW = 18
GANTT_LABEL = 170
GANTT_WIDTH = 900


def _label(name: str, limit: int = LABEL_CHARS) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def dag_svg(tasks: Sequence[dict[str, Any]]) -> Markup:
    """The DAG of `tasks` (dicts with name, type, upstream, state) as an SVG element."""
    placed = layout([t["name"] for t in tasks], {t["name"]: t["upstream"] for t in tasks})
    parts = [
        f'<svg class="dag" xmlns="http://www.w3.org/2000/svg" width="{placed.width:.0f}" '
        f'height="{placed.height:.0f}" viewBox="0 0 {placed.width:.0f} {placed.height:.0f}" role="img" '
        f'aria-label="task graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z"/></marker></defs>',
    ]
    for edge in placed.edges:
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in edge.points)
        parts.append(f'<polyline class="edge" points="{points}" marker-end="url(#arrow)" '
                     f'data-from="{escape(edge.source)}" data-to="{escape(edge.target)}"/>')
    for t in tasks:
        x, y = placed.nodes[t["name"]]
        name, state = escape(t["name"]), escape(t["state"])
        parts.append(
            f'<g class="node s-{state}" data-task="{name}" data-state="{state}" transform="translate({x:.1f},{y:.1f})" '
            f'tabindex="0"><title>{name} ({escape(t["type"])}): {state}</title>'
            f'<rect width="{NODE_W}" height="{NODE_H}" rx="5"/>'
            f'<text x="8" y="{NODE_H / 2 + 4:.0f}">{escape(_label(t["name"]))}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def gantt_svg(attempts: Sequence[dict[str, Any]]) -> Markup:
    """One bar per attempt (dicts with task, attempt, state, start_ms, end_ms) on a common time axis."""
    timed = [a for a in attempts if a.get("start_ms") is not None]
    if not timed:
        return Markup('<p class="muted">no attempt has started yet</p>')
    t0 = min(a["start_ms"] for a in timed)
    t1 = max(max(a["end_ms"] or a["start_ms"], a["start_ms"]) for a in timed)
    span = max(t1 - t0, 1)
    scale = (GANTT_WIDTH - GANTT_LABEL - 10) / span
    height = GANTT_ROW * len(timed) + 24
    parts = [f'<svg class="gantt" xmlns="http://www.w3.org/2000/svg" width="{GANTT_WIDTH}" height="{height}" '
             f'viewBox="0 0 {GANTT_WIDTH} {height}" role="img" aria-label="attempts over time">']
    for i, a in enumerate(timed):
        y = i * GANTT_ROW + 2
        x = GANTT_LABEL + (a["start_ms"] - t0) * scale
        w = max(((a["end_ms"] or a["start_ms"]) - a["start_ms"]) * scale, 2)
        label = escape(_label(f'{a["task"]} #{a["attempt"]}', 26))
        state = escape(a["state"])
        parts.append(
            f'<g class="bar s-{state}"><title>{escape(a["task"])} attempt {a["attempt"]}: {state}, '
            f'{escape(a.get("duration_ms") if a.get("duration_ms") is not None else "running")} ms</title>'
            f'<text x="0" y="{y + 12}">{label}</text>'
            f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{GANTT_ROW - 5}" rx="2"/></g>'
        )
    axis_y = len(timed) * GANTT_ROW + 16
    parts.append(f'<text class="axis" x="{GANTT_LABEL}" y="{axis_y}">0 s</text>'
                 f'<text class="axis" x="{GANTT_WIDTH - 10}" y="{axis_y}" text-anchor="end">{span / 1000:.1f} s</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
