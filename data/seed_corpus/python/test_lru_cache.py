import unittest

from lru_cache import LRUCache


class LRUCacheTest(unittest.TestCase):
    def test_evicts_least_recent(self):
        cache = LRUCache(2)
        cache.put("a", 1)
        cache.put("b", 2)
        self.assertEqual(cache.get("a"), 1)
        cache.put("c", 3)
        self.assertIsNone(cache.get("b"))
        self.assertEqual(cache.get("a"), 1)
        self.assertEqual(cache.get("c"), 3)
        self.assertEqual(cache.keys(), ["a", "c"])

    def test_update_refreshes(self):
        cache = LRUCache(2)
        cache.put("a", 1)
        cache.put("b", 2)
        cache.put("a", 10)
        cache.put("c", 3)
        self.assertEqual(cache.keys(), ["a", "c"])
        self.assertEqual(cache.get("a"), 10)

    def test_stats_and_default(self):
        cache = LRUCache(1)
        self.assertEqual(cache.get("x", "none"), "none")
        cache.put("x", 5)
        cache.get("x")
        cache.get("x")
        self.assertEqual((cache.hits, cache.misses), (2, 1))

    def test_capacity(self):
        with self.assertRaises(ValueError):
            LRUCache(0)
        cache = LRUCache(3)
        for i in range(10):
            cache.put(i, i)
        self.assertEqual(cache.keys(), [7, 8, 9])


if __name__ == "__main__":
    unittest.main()
