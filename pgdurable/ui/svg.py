"""A ``show.Graph`` drawn as SVG on the server (no JavaScript, no layout library).

Layered layout: each box gets the rank of its longest path from the entry
(back edges, the dashed "again" arrows of loops, are left out of the ranking
so the picture stays a top-down flow); boxes of one rank sit side by side in
the order the graph added them. Every text goes through XML escaping; a box
links to its node's row on the instance page (``#node-<id>``).
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from pgdurable.show import Graph

BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN = 230, 34, 24, 30, 16
LABEL_CHARS = 34
FILL = {
    "completed": "#c8e6c9",
    "running": "#fff59d",
    "failed": "#ffcdd2",
    "cancelled": "#e0e0e0",
    "skipped": "#f5f5f5",
    "pending": "#ffffff",
}


def _ranks(g: Graph) -> dict[str, int]:
    """Longest-path rank of every box, ignoring the edges that close a cycle."""
    forward: dict[str, list[str]] = {key: [] for key in g.nodes}
    for a, b, _, _ in g.edges:
        forward[a].append(b)
    order: list[str] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    back: set[tuple[str, str]] = set()
    for start in g.nodes:
        if start in state:
            continue
        stack = [(start, iter(forward[start]))]
        state[start] = 1
        while stack:
            key, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[key] = 2
                order.append(key)
                stack.pop()
            elif state.get(child) == 1:
                back.add((key, child))
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(forward[child])))
    rank = {key: 0 for key in g.nodes}
    for key in reversed(order):  # reverse post-order is a topological order
        for child in forward[key]:
            if (key, child) not in back:
                rank[child] = max(rank[child], rank[key] + 1)
    return rank


def _short(text: str) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= LABEL_CHARS else one_line[: LABEL_CHARS - 1] + "…"


def render(g: Graph) -> str:
    """The SVG document (an ``<svg>`` element to inline in a page)."""
    rank = _ranks(g)
    rows: dict[int, list[str]] = {}
    for key in g.nodes:
        rows.setdefault(rank[key], []).append(key)
    widest = max((len(r) for r in rows.values()), default=1)
    width = MARGIN * 2 + widest * BOX_W + (widest - 1) * GAP_X
    height = MARGIN * 2 + len(rows) * BOX_H + max(len(rows) - 1, 0) * GAP_Y
    centre: dict[str, tuple[float, float]] = {}
    for r, keys in rows.items():
        row_w = len(keys) * BOX_W + (len(keys) - 1) * GAP_X
        x0 = (width - row_w) / 2
        for i, key in enumerate(keys):
            centre[key] = (
                x0 + i * (BOX_W + GAP_X) + BOX_W / 2,
                MARGIN + r * (BOX_H + GAP_Y) + BOX_H / 2,
            )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{width:.0f}"'
        f' height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="img"'
        f" aria-label={quoteattr(g.title)}>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5"'
        ' markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
    ]
    for a, b, label, dashed in g.edges:
        (x1, y1), (x2, y2) = centre[a], centre[b]
        style = ' stroke-dasharray="5,4"' if dashed else ""
        if rank[b] <= rank[a]:  # a back edge: around the right side
            side = max(x1, x2) + BOX_W / 2 + 14
            d = f"M{x1 + BOX_W / 2:.0f},{y1:.0f} C{side:.0f},{y1:.0f} {side:.0f},{y2:.0f}"
            d += f" {x2 + BOX_W / 2:.0f},{y2:.0f}"
            lx, ly = side, (y1 + y2) / 2
        else:
            d = f"M{x1:.0f},{y1 + _half(g, a):.0f} L{x2:.0f},{y2 - _half(g, b):.0f}"
            lx, ly = (x1 + x2) / 2 + 4, (y1 + y2) / 2
        parts.append(f'<path d="{d}" fill="none" stroke="#555"{style} marker-end="url(#arrow)"/>')
        if label:
            parts.append(f'<text class="edge" x="{lx:.0f}" y="{ly:.0f}">{escape(label)}</text>')
    for key, (label, shape, status) in g.nodes.items():
        x, y = centre[key]
        fill = FILL.get(status or "", "#ffffff")
        title = label + (f" [{status}]" if status else "")
        shape_svg = _shape(shape, x, y, fill)
        text = ""
        if shape != "point":
            text = f'<text x="{x:.0f}" y="{y + 4:.0f}" text-anchor="middle">'
            text += f"{escape(_short(label))}</text>"
        node = g.node_ids.get(key)
        cls = quoteattr(f"node {shape} {status or 'none'}")
        body = f"<title>{escape(title)}</title>{shape_svg}{text}"
        if node:
            parts.append(
                f'<a href="#node-{node}" class={cls} data-node={quoteattr(node)}'
                f" data-status={quoteattr(status or '')}>{body}</a>"
            )
        else:
            parts.append(f"<g class={cls}>{body}</g>")
    parts.append("</svg>")
    return "\n".join(parts)


def _half(g: Graph, key: str) -> float:
    return 7 if g.nodes[key][1] == "point" else BOX_H / 2


def _shape(shape: str, x: float, y: float, fill: str) -> str:
    w, h = BOX_W / 2, BOX_H / 2
    if shape == "point":
        return f'<circle cx="{x:.0f}" cy="{y:.0f}" r="7" fill="#555"/>'
    if shape == "decision":
        points = f"{x - w:.0f},{y:.0f} {x:.0f},{y - h:.0f} {x + w:.0f},{y:.0f} {x:.0f},{y + h:.0f}"
        return f'<polygon points="{points}" fill="{fill}" stroke="#333"/>'
    radius = h if shape == "loop" else 4
    extra = ' stroke-width="2.5"' if shape == "fork" else ""
    return (
        f'<rect x="{x - w:.0f}" y="{y - h:.0f}" width="{BOX_W}" height="{BOX_H}"'
        f' rx="{radius:.0f}" fill="{fill}" stroke="#333"{extra}/>'
    )
