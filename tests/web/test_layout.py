"""The DAG layout: longest-path layers, dummy nodes for long edges, barycentre crossing reduction."""

from __future__ import annotations

import itertools
import random

import pytest

from easysched_es.web.layout import NODE_H, NODE_W, layout, longest_path_layers


def test_layers_are_longest_paths_from_the_roots() -> None:
    up = {"a": [], "b": ["a"], "c": ["a", "b"], "d": [], "e": ["d", "c"]}
    assert longest_path_layers(list(up), up) == {"a": 0, "b": 1, "c": 2, "d": 0, "e": 3}
    with pytest.raises(ValueError, match="cycle"):
        longest_path_layers(["x", "y"], {"x": ["y"], "y": ["x"]})
    with pytest.raises(ValueError, match="unknown upstream"):
        longest_path_layers(["x"], {"x": ["nope"]})


def test_crossings_are_removed_where_an_ordering_without_them_exists() -> None:
    # Two chains drawn crossed in definition order: a1->b2, a2->b1.
    tasks = ["a1", "a2", "b1", "b2"]
    up = {"b2": ["a1"], "b1": ["a2"]}
    placed = layout(tasks, up)
    assert placed.crossings == 0
    (b1x, b1y), (b2x, b2y) = placed.nodes["b1"], placed.nodes["b2"]
    assert b1x == b2x and (placed.nodes["a1"][1] < placed.nodes["a2"][1]) == (b2y < b1y)


def test_a_long_edge_bends_around_the_layers_it_crosses() -> None:
    tasks = ["a", "b", "c", "d"]
    up = {"b": ["a"], "c": ["b"], "d": ["a", "c"]}
    placed = layout(tasks, up)
    long_edge = next(e for e in placed.edges if (e.source, e.target) == ("a", "d"))
    assert len(long_edge.points) == 2 + 2 * 2  # two dummies, each entered and left
    assert long_edge.points[0] == (placed.nodes["a"][0] + NODE_W, placed.nodes["a"][1] + NODE_H / 2)
    assert long_edge.points[-1] == (placed.nodes["d"][0], placed.nodes["d"][1] + NODE_H / 2)


def test_no_two_tasks_overlap_at_200_tasks_and_the_layout_is_deterministic() -> None:
    rng = random.Random(7)
    tasks = [f"task_{i:03d}" for i in range(200)]
    up = {t: sorted({tasks[rng.randrange(i)] for _ in range(rng.randint(0, 2))}) if i else [] for i, t in
          enumerate(tasks)}
    placed = layout(tasks, up)
    boxes = sorted(placed.nodes.values())
    for (x1, y1), (x2, y2) in itertools.pairwise(boxes):
        assert x1 != x2 or y2 - y1 >= NODE_H, "two tasks overlap"
    assert all(0 <= x <= placed.width - NODE_W and 0 <= y <= placed.height - NODE_H for x, y in boxes)
    assert sum(len(layer) for layer in placed.layers) == 200
    from easysched_es.web import layout as module

    assert module._layout(tasks, up) == placed  # deterministic (and the cache gives the same)
    # Crossing reduction helps: fewer crossings than the definition order gives.
    unordered = module.SWEEPS
    try:
        module.SWEEPS = 0
        baseline = module._layout(tasks, up).crossings
    finally:
        module.SWEEPS = unordered
    assert placed.crossings < baseline


def test_empty_and_single() -> None:
    assert layout([], {}).nodes == {}
    assert list(layout(["only"], {}).nodes) == ["only"]
