"""A stack that reports its minimum in O(1), and a queue built from two stacks."""


class MinStack:
    def __init__(self):
        self._items = []
        self._minimums = []

    def push(self, value):
        self._items.append(value)
        if not self._minimums or value <= self._minimums[-1]:
            self._minimums.append(value)

    def pop(self):
        if not self._items:
            raise IndexError("pop from empty stack")
        value = self._items.pop()
        if value == self._minimums[-1]:
            self._minimums.pop()
        return value

    def minimum(self):
        if not self._minimums:
            raise IndexError("empty stack")
        return self._minimums[-1]

    def __len__(self):
        return len(self._items)


class TwoStackQueue:
    def __init__(self):
        self._inbox = []
        self._outbox = []

    def enqueue(self, value):
        self._inbox.append(value)

    def dequeue(self):
        if not self._outbox:
            while self._inbox:
                self._outbox.append(self._inbox.pop())
        if not self._outbox:
            raise IndexError("dequeue from empty queue")
        return self._outbox.pop()

    def __len__(self):
        return len(self._inbox) + len(self._outbox)
