import unittest

from knapsack import count_ways, knapsack, min_coins


class KnapsackTest(unittest.TestCase):
    def test_knapsack(self):
        items = [(1, 1), (3, 4), (4, 5), (5, 7)]
        self.assertEqual(knapsack(items, 7), 9)
        self.assertEqual(knapsack(items, 0), 0)
        self.assertEqual(knapsack(items, 13), 17)
        self.assertEqual(knapsack([(5, 10)], 4), 0)
        self.assertEqual(knapsack([(2, 3), (2, 3)], 4), 6)
        self.assertEqual(knapsack([(3, 5)], 3), 5)

    def test_min_coins(self):
        self.assertEqual(min_coins([1, 2, 5], 11), 3)
        self.assertEqual(min_coins([2], 3), -1)
        self.assertEqual(min_coins([1], 0), 0)
        self.assertEqual(min_coins([1, 3, 4], 6), 2)
        self.assertEqual(min_coins([5, 10], 10), 1)

    def test_count_ways(self):
        self.assertEqual(count_ways([1, 2, 5], 5), 4)
        self.assertEqual(count_ways([2], 3), 0)
        self.assertEqual(count_ways([10], 10), 1)
        self.assertEqual(count_ways([1, 2], 0), 1)
        self.assertEqual(count_ways([2, 3], 7), 1)


if __name__ == "__main__":
    unittest.main()
