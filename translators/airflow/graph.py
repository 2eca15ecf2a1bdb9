"""Dependency graph -> nested sequence/join structure.

Airflow runs a task once its direct upstream tasks are done; the DSL only
has ``~>`` (sequence) and ``df.join`` (parallel). A graph that is
series-parallel maps exactly: after a transitive reduction, a set of tasks
either splits into independent components (a join) or into a prefix A and a
rest B where every task of A precedes every task of B (a sequence); recurse.

Other graphs (the "N" shape ``a>>c, b>>c, b>>d``) have no exact form. We
still never drop an ordering constraint: where no exact cut exists we cut at
the prefix of a topological order that adds the fewest new "waits for" pairs,
and return those pairs so the report can name the lost parallelism.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Leaf:
    task: str


@dataclass(frozen=True)
class Series:
    parts: tuple[Structure, ...]


@dataclass(frozen=True)
class Parallel:
    parts: tuple[Structure, ...]


Structure = Leaf | Series | Parallel


class CycleError(ValueError):
    """The dependencies form a cycle (Airflow refuses such a DAG)."""


def topological(nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> list[str]:
    """Kahn's order, ties broken by the order tasks were defined (stable output)."""
    position = {n: i for i, n in enumerate(nodes)}
    indegree = {n: 0 for n in nodes}
    down: dict[str, list[str]] = {n: [] for n in nodes}
    for u, d in edges:
        down[u].append(d)
        indegree[d] += 1
    ready = sorted((n for n in nodes if indegree[n] == 0), key=position.__getitem__)
    order: list[str] = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for d in down[n]:
            indegree[d] -= 1
            if indegree[d] == 0:
                ready.append(d)
                ready.sort(key=position.__getitem__)
    if len(order) != len(nodes):
        stuck = [n for n in nodes if n not in order]
        raise CycleError(f"the dependencies form a cycle through {', '.join(stuck[:5])}")
    return order


class _Closure:
    """Reachability as bit sets over a fixed topological order."""

    def __init__(self, order: list[str], edges: Sequence[tuple[str, str]]) -> None:
        self.order = order
        self.bit = {n: 1 << i for i, n in enumerate(order)}
        direct = {n: 0 for n in order}
        for u, d in edges:
            direct[u] |= self.bit[d]
        self.reach = {n: 0 for n in order}  # strict descendants
        for n in reversed(order):
            acc = direct[n]
            rest = direct[n]
            while rest:
                low = rest & -rest
                acc |= self.reach[self.order[low.bit_length() - 1]]
                rest ^= low
            self.reach[n] = acc

    def mask(self, nodes) -> int:
        m = 0
        for n in nodes:
            m |= self.bit[n]
        return m

    def related(self, a: str, b: str) -> bool:
        return bool(self.reach[a] & self.bit[b] or self.reach[b] & self.bit[a])


def decompose(
    nodes: Sequence[str], edges: Sequence[tuple[str, str]]
) -> tuple[Structure | None, list[tuple[str, str]]]:
    """The structure of the graph and the ordering pairs it adds (empty when exact)."""
    if not nodes:
        return None, []
    order = topological(nodes, edges)
    closure = _Closure(order, edges)
    added: list[tuple[str, str]] = []
    return _split(order, closure, added), added


def _components(group: list[str], closure: _Closure) -> list[list[str]]:
    parent = {n: n for n in group}

    def find(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for i, a in enumerate(group):
        for b in group[i + 1 :]:
            if closure.related(a, b):
                parent[find(a)] = find(b)
    comps: dict[str, list[str]] = {}
    for n in group:
        comps.setdefault(find(n), []).append(n)
    return list(comps.values())


def _split(group: list[str], closure: _Closure, added: list[tuple[str, str]]) -> Structure:
    if len(group) == 1:
        return Leaf(group[0])
    comps = _components(group, closure)
    if len(comps) > 1:
        return Parallel(tuple(_split(c, closure, added) for c in comps))
    # One connected component: look for an exact series cut, else the cheapest.
    best_k, best_cost = 1, None
    common = -1
    for k in range(1, len(group)):
        common &= closure.reach[group[k - 1]]
        rest = closure.mask(group[k:])
        if common & rest == rest:
            best_k, best_cost = k, 0
            break
        prefix_ok = all(
            not (closure.reach[b] & closure.bit[a]) for a in group[:k] for b in group[k:]
        )
        if not prefix_ok:
            continue
        cost = sum(1 for a in group[:k] for b in group[k:] if not closure.reach[a] & closure.bit[b])
        if best_cost is None or cost < best_cost:
            best_k, best_cost = k, cost
    head, tail = group[:best_k], group[best_k:]
    if best_cost:
        added.extend((a, b) for a in head for b in tail if not closure.reach[a] & closure.bit[b])
    parts: list[Structure] = []
    for piece in (head, tail):
        sub = _split(piece, closure, added)
        parts.extend(sub.parts if isinstance(sub, Series) else (sub,))
    return Series(tuple(parts))
