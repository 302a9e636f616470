"""Graph algorithms on a workflow's task DAG: linear (O(V+E)) and iterative (no recursion).

A definition of 10,000 tasks in a chain must define in well under a second, and no shape of
definition may exhaust the Python stack (a RecursionError at `define` would be a poison
record in the log). The results equal what the obvious recursive and round-based versions
give, so rejection reasons and orders recorded in old logs replay byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def find_cycle(upstream: Mapping[str, Sequence[str]]) -> list[str]:
    """One cycle as task names (the first repeated at the end), or [].

    `upstream` maps each task, in definition order, to its upstream names; names that are
    not keys are ignored. The cycle found is the one a depth-first search from each task in
    definition order, following upstreams in their listed order, meets first.
    """
    colour: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in upstream:
        if root in colour:
            continue
        path: list[str] = [root]
        where: dict[str, int] = {root: 0}  # position on the path
        colour[root] = 1
        stack: list[tuple[Sequence[str], int]] = [(upstream[root], 0)]
        while stack:
            ups, i = stack[-1]
            if i == len(ups):
                stack.pop()
                done = path.pop()
                del where[done]
                colour[done] = 2
                continue
            stack[-1] = (ups, i + 1)
            up = ups[i]
            seen = colour.get(up)
            if seen == 1:
                return [*path[where[up]:], up]
            if seen is None and up in upstream:
                colour[up] = 1
                where[up] = len(path)
                path.append(up)
                stack.append((upstream[up], 0))
    return []


def topological_order(upstream: Mapping[str, Sequence[str]]) -> list[str] | None:
    """Task names so that each follows its upstreams, or None if some never become ready (a cycle).

    The order is by rounds: first every task without upstreams, then every task whose
    upstreams are all in earlier rounds, and so on; within a round, definition order.
    """
    index = {name: i for i, name in enumerate(upstream)}
    waiting: dict[str, int] = {}
    downstream: dict[str, list[str]] = {name: [] for name in upstream}
    for name, ups in upstream.items():
        distinct = set(ups)
        waiting[name] = len(distinct)
        for up in distinct:
            if up not in downstream:
                waiting[name] = -1  # an unknown upstream: never ready
                break
            downstream[up].append(name)
    current = [name for name in upstream if waiting[name] == 0]
    order: list[str] = []
    while current:
        order.extend(current)
        following: list[str] = []
        for name in current:
            for down in downstream[name]:
                waiting[down] -= 1
                if waiting[down] == 0:
                    following.append(down)
        following.sort(key=index.__getitem__)
        current = following
    return order if len(order) == len(upstream) else None


def describe_cycle(cycle: Sequence[str], shown: int = 20) -> str:
    """A cycle as "a -> b -> a", its middle elided when it is long (a reason stays readable)."""
    if len(cycle) <= shown:
        return " -> ".join(cycle)
    head = " -> ".join(cycle[: shown // 2])
    tail = " -> ".join(cycle[-(shown // 2):])
    return f"{head} -> ... ({len(cycle) - shown} more) ... -> {tail}"
