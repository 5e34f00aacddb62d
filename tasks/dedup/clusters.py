"""Union-find over document ids: near-duplicate pairs become clusters, and the smallest id survives."""

from __future__ import annotations


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
