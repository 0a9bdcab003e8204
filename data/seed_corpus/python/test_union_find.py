import unittest

from union_find import UnionFind, count_islands


class UnionFindTest(unittest.TestCase):
    def test_union_and_find(self):
        sets = UnionFind(6)
        self.assertTrue(sets.union(0, 1))
        self.assertTrue(sets.union(2, 3))
        self.assertFalse(sets.union(1, 0))
        self.assertTrue(sets.union(1, 3))
        self.assertTrue(sets.connected(0, 2))
        self.assertFalse(sets.connected(0, 4))
        self.assertEqual(sets.groups, 3)
        self.assertEqual(sets.group_size(3), 4)
        self.assertEqual(sets.group_size(5), 1)

    def test_islands(self):
        grid = ["##..#",
                "#...#",
                "..#..",
                "....#"]
        self.assertEqual(count_islands(grid), 4)
        self.assertEqual(count_islands(["###", "#.#", "###"]), 1)
        self.assertEqual(count_islands(["#.#.#"]), 3)
        self.assertEqual(count_islands([]), 0)
        self.assertEqual(count_islands(["..", ".."]), 0)
        self.assertEqual(count_islands(["#", "#", "."]), 1)


if __name__ == "__main__":
    unittest.main()
