import unittest

from linked_list import LinkedList


class LinkedListTest(unittest.TestCase):
    def test_build_and_list(self):
        self.assertEqual(LinkedList([1, 2, 3]).to_list(), [1, 2, 3])
        self.assertEqual(LinkedList().to_list(), [])
        self.assertEqual(LinkedList([1, 2, 3]).size, 3)

    def test_push_pop(self):
        items = LinkedList([2])
        items.push(1)
        self.assertEqual(items.to_list(), [1, 2])
        self.assertEqual(items.pop(), 1)
        self.assertEqual(items.pop(), 2)
        self.assertEqual(items.size, 0)
        with self.assertRaises(IndexError):
            items.pop()

    def test_reverse(self):
        items = LinkedList([1, 2, 3, 4])
        items.reverse()
        self.assertEqual(items.to_list(), [4, 3, 2, 1])
        single = LinkedList([9])
        single.reverse()
        self.assertEqual(single.to_list(), [9])
        empty = LinkedList()
        empty.reverse()
        self.assertEqual(empty.to_list(), [])

    def test_index(self):
        items = LinkedList(["a", "b", "c", "b"])
        self.assertEqual(items.index("a"), 0)
        self.assertEqual(items.index("b"), 1)
        self.assertEqual(items.index("c"), 2)
        self.assertEqual(items.index("z"), -1)


if __name__ == "__main__":
    unittest.main()
