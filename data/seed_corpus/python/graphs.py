"""Graph algorithms on adjacency dicts: BFS shortest path, topological order, Dijkstra."""

import heapq
from collections import deque


def bfs_path(graph, start, goal):
    """Fewest-edges path from start to goal as a list of nodes, or None."""
    previous = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            path = []
            while node is not None:
                path.append(node)
                node = previous[node]
            return path[::-1]
        for neighbour in graph.get(node, ()):
            if neighbour not in previous:
                previous[neighbour] = node
                queue.append(neighbour)
    return None


def topological_order(graph):
    """Kahn's algorithm, ties broken by sorted name; raises ValueError on a cycle."""
    indegree = {node: 0 for node in graph}
    for targets in graph.values():
        for target in targets:
            indegree[target] = indegree.get(target, 0) + 1
    ready = sorted(node for node, degree in indegree.items() if degree == 0)
    order = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for target in graph.get(node, ()):
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append(target)
                ready.sort()
    if len(order) != len(indegree):
        raise ValueError("graph has a cycle")
    return order


def dijkstra(graph, start):
    """Shortest distances from start; graph maps node -> [(neighbour, weight)]."""
    distances = {start: 0}
    heap = [(0, start)]
    while heap:
        distance, node = heapq.heappop(heap)
        if distance > distances.get(node, float("inf")):
            continue
        for neighbour, weight in graph.get(node, ()):
            candidate = distance + weight
            if candidate < distances.get(neighbour, float("inf")):
                distances[neighbour] = candidate
                heapq.heappush(heap, (candidate, neighbour))
    return distances
