"""A binary min-heap on a list, and heap sort with it."""


class MinHeap:
    def __init__(self):
        self.items = []

    def push(self, value):
        self.items.append(value)
        i = len(self.items) - 1
        while i > 0:
            parent = (i - 1) // 2
            if self.items[parent] <= self.items[i]:
                break
            self.items[parent], self.items[i] = self.items[i], self.items[parent]
            i = parent

    def pop(self):
        if not self.items:
            raise IndexError("pop from empty heap")
        top = self.items[0]
        last = self.items.pop()
        if self.items:
            self.items[0] = last
            i = 0
            while True:
                smallest = i
                for child in (2 * i + 1, 2 * i + 2):
                    if child < len(self.items) and self.items[child] < self.items[smallest]:
                        smallest = child
                if smallest == i:
                    break
                self.items[smallest], self.items[i] = self.items[i], self.items[smallest]
                i = smallest
        return top

    def __len__(self):
        return len(self.items)


def heap_sort(values):
    heap = MinHeap()
    for value in values:
        heap.push(value)
    return [heap.pop() for _ in range(len(heap))]
