"""Layered DAG layout (Sugiyama style), computed in Python so the page needs no layout library.

1. Layers by longest path from the roots: a task sits one column right of its latest upstream.
2. An edge that spans several layers gets a dummy node in each layer it crosses, so that it
   bends around the tasks instead of through them.
3. Crossing reduction: sweeps down and up the layers, ordering each layer by the barycentre
   (mean position) of its neighbours in the previous one; the ordering with the fewest
   crossings seen is kept.
4. Coordinates: layers are columns left to right; each layer is centred vertically.

Pure and deterministic: the same tasks in the same order give the same picture.
"""

from __future__ import annotations

import bisect
import functools
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

NODE_W = 150
NODE_H = 30
GAP_X = 60
GAP_Y = 14
MARGIN = 10
SWEEPS = 12


@dataclass(frozen=True)
class Edge:
    """An edge from `source` to `target`, drawn through `points` (x, y)."""

    source: str
    target: str
    points: list[tuple[float, float]]


@dataclass
class Layout:
    """Where each task is drawn: its top-left corner, in pixels, and the size of the picture."""

    nodes: dict[str, tuple[float, float]] = field(default_factory=dict)
    layers: list[list[str]] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    width: float = 0.0
    height: float = 0.0
    crossings: int = 0


def longest_path_layers(tasks: Sequence[str], upstream: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """The layer of each task: 0 for roots, else one more than its deepest upstream.

    Raises ValueError on a cycle or an unknown upstream (definitions are validated at define
    time, so this is a bug guard, not user input handling).
    """
    known = set(tasks)
    layer: dict[str, int] = {}
    pending = {t: [u for u in upstream.get(t, ()) if u in known] for t in tasks}
    for t in tasks:
        missing = [u for u in upstream.get(t, ()) if u not in known]
        if missing:
            raise ValueError(f"task {t!r} has unknown upstream {missing}")
    remaining = list(tasks)
    while remaining:
        ready = [t for t in remaining if all(u in layer for u in pending[t])]
        if not ready:
            raise ValueError(f"the graph has a cycle among {remaining[:5]}")
        for t in ready:
            layer[t] = 1 + max((layer[u] for u in pending[t]), default=-1)
        ready_set = set(ready)
        remaining = [t for t in remaining if t not in ready_set]
    return layer


def _crossings(upper: list[str], lower: list[str], down: Mapping[str, list[str]]) -> int:
    pos = {n: i for i, n in enumerate(lower)}
    # Edges in upper order (ends sorted within a node: edges sharing an end never cross); each
    # edge crosses every earlier one that ends strictly below it.
    seen: list[int] = []
    count = 0
    for s in upper:
        for end in sorted(pos[t] for t in down.get(s, ()) if t in pos):
            count += len(seen) - bisect.bisect_right(seen, end)
            bisect.insort(seen, end)
    return count


def _total_crossings(layers: list[list[str]], down: Mapping[str, list[str]]) -> int:
    return sum(_crossings(layers[i], layers[i + 1], down) for i in range(len(layers) - 1))


def _reorder(layer: list[str], fixed: list[str], neighbours: Mapping[str, list[str]]) -> list[str]:
    pos = {n: i for i, n in enumerate(fixed)}

    def barycentre(item: tuple[int, str]) -> tuple[float, int]:
        index, node = item
        near = [pos[n] for n in neighbours.get(node, ()) if n in pos]
        # A node without neighbours there keeps its place.
        return (sum(near) / len(near) if near else float(index), index)

    return [n for _, n in sorted(enumerate(layer), key=barycentre)]


def layout(tasks: Sequence[str], upstream: Mapping[str, Sequence[str]]) -> Layout:
    """Lay out the DAG of `tasks` (in definition order) with edges from each upstream.

    Cached by the graph (a definition version's DAG never changes); treat the result as read-only.
    """
    return _cached(tuple(tasks), tuple(tuple(upstream.get(t, ())) for t in tasks))


@functools.lru_cache(maxsize=256)
def _cached(tasks: tuple[str, ...], ups: tuple[tuple[str, ...], ...]) -> Layout:
    return _layout(tasks, dict(zip(tasks, ups, strict=True)))


def _layout(tasks: Sequence[str], upstream: Mapping[str, Sequence[str]]) -> Layout:
    if not tasks:
        return Layout()
    level = longest_path_layers(tasks, upstream)
    depth = max(level.values()) + 1
    layers: list[list[str]] = [[] for _ in range(depth)]
    for t in tasks:
        layers[level[t]].append(t)
    down: dict[str, list[str]] = {}
    up: dict[str, list[str]] = {}
    chains: list[tuple[str, str, list[str]]] = []
    for t in tasks:
        for u in upstream.get(t, ()):
            path = [u]
            for lv in range(level[u] + 1, level[t]):
                dummy = f"\0{u}\0{t}\0{lv}"  # NUL cannot occur in a task name
                layers[lv].append(dummy)
                path.append(dummy)
            path.append(t)
            for a, b in itertools.pairwise(path):
                down.setdefault(a, []).append(b)
                up.setdefault(b, []).append(a)
            chains.append((u, t, path))
    best = [list(layer) for layer in layers]
    best_count = _total_crossings(best, down)
    for sweep in range(SWEEPS):
        if best_count == 0:
            break
        if sweep % 2 == 0:
            for i in range(1, depth):
                layers[i] = _reorder(layers[i], layers[i - 1], up)
        else:
            for i in range(depth - 2, -1, -1):
                layers[i] = _reorder(layers[i], layers[i + 1], down)
        count = _total_crossings(layers, down)
        if count < best_count:
            best, best_count = [list(layer) for layer in layers], count
    tallest = max(len(layer) for layer in best)
    height = 2 * MARGIN + tallest * NODE_H + (tallest - 1) * GAP_Y
    places: dict[str, tuple[float, float]] = {}
    for i, layer in enumerate(best):
        span = len(layer) * NODE_H + (len(layer) - 1) * GAP_Y
        top = (height - span) / 2
        for j, node in enumerate(layer):
            places[node] = (MARGIN + i * (NODE_W + GAP_X), top + j * (NODE_H + GAP_Y))
    result = Layout(
        nodes={t: places[t] for t in tasks},
        layers=[[n for n in layer if not n.startswith("\0")] for layer in best],
        width=2 * MARGIN + depth * NODE_W + (depth - 1) * GAP_X,
        height=height,
        crossings=best_count,
    )
    for source, target, path in chains:
        points: list[tuple[float, float]] = []
        for k, node in enumerate(path):
            x, y = places[node]
            if k == 0:
                points.append((x + NODE_W, y + NODE_H / 2))
            elif k == len(path) - 1:
                points.append((x, y + NODE_H / 2))
            else:  # through the dummy's slot, entering and leaving level
                points.extend([(x, y + NODE_H / 2), (x + NODE_W, y + NODE_H / 2)])
        result.edges.append(Edge(source, target, points))
    return result
