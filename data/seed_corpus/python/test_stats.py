import unittest

from stats import mean, median, mode, percentile, variance


class StatsTest(unittest.TestCase):
    def test_mean(self):
        self.assertEqual(mean([1, 2, 3, 4]), 2.5)
        self.assertEqual(mean([5]), 5)
        with self.assertRaises(ValueError):
            mean([])

    def test_median(self):
        self.assertEqual(median([3, 1, 2]), 2)
        self.assertEqual(median([4, 1, 3, 2]), 2.5)
        self.assertEqual(median([7]), 7)
        with self.assertRaises(ValueError):
            median([])

    def test_mode(self):
        self.assertEqual(mode([1, 2, 2, 3]), 2)
        self.assertEqual(mode([3, 3, 1, 1, 2]), 1)
        self.assertEqual(mode([9]), 9)

    def test_variance(self):
        data = [2, 4, 4, 4, 5, 5, 7, 9]
        self.assertEqual(variance(data), 4)
        self.assertAlmostEqual(variance(data, sample=True), 32 / 7)
        self.assertEqual(variance([1, 1, 1]), 0)

    def test_percentile(self):
        data = [15, 20, 35, 40, 50]
        self.assertEqual(percentile(data, 0), 15)
        self.assertEqual(percentile(data, 100), 50)
        self.assertEqual(percentile(data, 50), 35)
        self.assertEqual(percentile(data, 25), 20)
        self.assertAlmostEqual(percentile(data, 40), 29)
        self.assertEqual(percentile([3], 70), 3)
        with self.assertRaises(ValueError):
            percentile(data, 101)


if __name__ == "__main__":
    unittest.main()
