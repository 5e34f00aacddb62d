"""Union-find over document ids: duplicate pairs become clusters; a survivor rule picks the one kept."""

from __future__ import annotations

from collections.abc import Callable


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        root = self.parent.setdefault(x, x)
        while self.parent[root] != root:
            root = self.parent[root]
        while x != root:  # path compression, iterative so long chains cannot overflow the stack
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            # The smaller id is the root: the earliest document of a cluster survives, on every run.
            low, high = sorted((root_a, root_b))
            self.parent[high] = low

    def clusters(self) -> dict[int, list[int]]:
        groups: dict[int, list[int]] = {}
        for x in self.parent:
            groups.setdefault(self.find(x), []).append(x)
        return groups


def survivors(
    clusters: dict[int, list[int]], rule: str, rank: Callable[[int], float], pinned: Callable[[int], bool]
) -> dict[int, int]:
    """Survivor per cluster root. Pinned documents (kept by an earlier run, already published) always win;
    otherwise `earliest` keeps the smallest id, and `longest` / `quality` the highest rank (text length, or
    alphabetic-word share), ties going to the smallest id."""
    chosen = {}
    for root, members in clusters.items():
        old = [m for m in members if pinned(m)]
        if old:
            chosen[root] = min(old)
        elif rule in ("longest", "quality"):
            chosen[root] = min(members, key=lambda m: (-rank(m), m))
        else:
            chosen[root] = min(members)
    return chosen
