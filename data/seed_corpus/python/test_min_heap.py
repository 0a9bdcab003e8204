import random
import unittest

from min_heap import MinHeap, heap_sort


class HeapTest(unittest.TestCase):
    def test_order(self):
        heap = MinHeap()
        for value in (5, 3, 8, 1, 9, 2):
            heap.push(value)
        self.assertEqual(len(heap), 6)
        self.assertEqual([heap.pop() for _ in range(6)], [1, 2, 3, 5, 8, 9])
        with self.assertRaises(IndexError):
            heap.pop()

    def test_interleaved(self):
        heap = MinHeap()
        heap.push(4)
        heap.push(2)
        self.assertEqual(heap.pop(), 2)
        heap.push(1)
        heap.push(3)
        self.assertEqual([heap.pop(), heap.pop(), heap.pop()], [1, 3, 4])

    def test_heap_sort(self):
        rng = random.Random(3)
        for size in (0, 1, 2, 7, 50):
            data = [rng.randint(-20, 20) for _ in range(size)]
            self.assertEqual(heap_sort(data), sorted(data))


if __name__ == "__main__":
    unittest.main()
