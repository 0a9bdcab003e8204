import unittest

from graphs import bfs_path, dijkstra, topological_order

GRAPH = {"a": ["b", "c"], "b": ["d"], "c": ["d", "e"], "d": ["f"], "e": ["f"], "f": []}


class GraphTest(unittest.TestCase):
    def test_bfs(self):
        self.assertEqual(bfs_path(GRAPH, "a", "f"), ["a", "b", "d", "f"])
        self.assertEqual(bfs_path(GRAPH, "c", "f"), ["c", "d", "f"])
        self.assertEqual(bfs_path(GRAPH, "a", "a"), ["a"])
        self.assertIsNone(bfs_path(GRAPH, "f", "a"))
        self.assertIsNone(bfs_path(GRAPH, "a", "zz"))

    def test_topological(self):
        self.assertEqual(topological_order(GRAPH), ["a", "b", "c", "d", "e", "f"])
        self.assertEqual(topological_order({"x": [], "w": ["x"]}), ["w", "x"])
        self.assertEqual(topological_order({}), [])
        with self.assertRaises(ValueError):
            topological_order({"a": ["b"], "b": ["a"]})

    def test_dijkstra(self):
        weighted = {"a": [("b", 7), ("c", 9), ("f", 14)], "b": [("c", 10), ("d", 15)], "c": [("d", 11), ("f", 2)],
                    "d": [("e", 6)], "f": [("e", 9)], "e": []}
        self.assertEqual(dijkstra(weighted, "a"), {"a": 0, "b": 7, "c": 9, "f": 11, "d": 20, "e": 20})
        self.assertEqual(dijkstra({"x": []}, "x"), {"x": 0})


if __name__ == "__main__":
    unittest.main()
