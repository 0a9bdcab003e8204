import unittest

from min_stack import MinStack, TwoStackQueue


class MinStackTest(unittest.TestCase):
    def test_minimum_tracks_pushes_and_pops(self):
        stack = MinStack()
        for value, expected in ((5, 5), (3, 3), (7, 3), (3, 3), (1, 1)):
            stack.push(value)
            self.assertEqual(stack.minimum(), expected)
        self.assertEqual(len(stack), 5)
        self.assertEqual(stack.pop(), 1)
        self.assertEqual(stack.minimum(), 3)
        self.assertEqual(stack.pop(), 3)
        self.assertEqual(stack.minimum(), 3)
        self.assertEqual(stack.pop(), 7)
        self.assertEqual(stack.pop(), 3)
        self.assertEqual(stack.minimum(), 5)
        self.assertEqual(len(stack), 1)

    def test_empty(self):
        stack = MinStack()
        with self.assertRaises(IndexError):
            stack.pop()
        with self.assertRaises(IndexError):
            stack.minimum()


class QueueTest(unittest.TestCase):
    def test_fifo(self):
        queue = TwoStackQueue()
        for i in range(3):
            queue.enqueue(i)
        self.assertEqual(queue.dequeue(), 0)
        queue.enqueue(3)
        self.assertEqual(len(queue), 3)
        self.assertEqual([queue.dequeue() for _ in range(3)], [1, 2, 3])
        self.assertEqual(len(queue), 0)
        with self.assertRaises(IndexError):
            queue.dequeue()


if __name__ == "__main__":
    unittest.main()
