import random
import unittest

from sorting import insertion_sort, merge_sort


class SortingTest(unittest.TestCase):
    def check(self, sort):
        self.assertEqual(sort([]), [])
        self.assertEqual(sort([1]), [1])
        self.assertEqual(sort([3, 1, 2]), [1, 2, 3])
        self.assertEqual(sort([5, 4, 3, 2, 1]), [1, 2, 3, 4, 5])
        self.assertEqual(sort([2, 2, 1, 1]), [1, 1, 2, 2])
        rng = random.Random(7)
        for _ in range(20):
            data = [rng.randint(-50, 50) for _ in range(rng.randint(0, 30))]
            self.assertEqual(sort(data), sorted(data))

    def check_stable(self, sort):
        pairs = [("b", 2), ("a", 1), ("c", 2), ("d", 1)]
        self.assertEqual(sort(pairs, key=lambda p: p[1]), [("a", 1), ("d", 1), ("b", 2), ("c", 2)])

    def test_insertion(self):
        self.check(insertion_sort)
        self.check_stable(insertion_sort)

    def test_merge(self):
        self.check(merge_sort)
        self.check_stable(merge_sort)

    def test_input_untouched(self):
        data = [3, 1, 2]
        insertion_sort(data)
        merge_sort(data)
        self.assertEqual(data, [3, 1, 2])


if __name__ == "__main__":
    unittest.main()
