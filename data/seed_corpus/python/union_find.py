"""Disjoint sets with path compression and union by size."""


class UnionFind:
    def __init__(self, n):
        self.parent = list(range(n))
        self.size = [1] * n
        self.groups = n

    def find(self, x):
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a, b):
        root_a, root_b = self.find(a), self.find(b)
        if root_a == root_b:
            return False
        if self.size[root_a] < self.size[root_b]:
            root_a, root_b = root_b, root_a
        self.parent[root_b] = root_a
        self.size[root_a] += self.size[root_b]
        self.groups -= 1
        return True

    def connected(self, a, b):
        return self.find(a) == self.find(b)

    def group_size(self, x):
        return self.size[self.find(x)]


def count_islands(grid):
    """Number of 4-connected groups of '#' cells."""
    rows = len(grid)
    cols = len(grid[0]) if rows else 0
    sets = UnionFind(rows * cols)
    land = 0
    for r in range(rows):
        for c in range(cols):
            if grid[r][c] != "#":
                continue
            land += 1
            if r > 0 and grid[r - 1][c] == "#" and sets.union(r * cols + c, (r - 1) * cols + c):
                land -= 1
            if c > 0 and grid[r][c - 1] == "#" and sets.union(r * cols + c, r * cols + c - 1):
                land -= 1
    return land
