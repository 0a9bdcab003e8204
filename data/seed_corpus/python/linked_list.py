"""A singly linked list with push, pop, reverse and search."""


class Node:
    def __init__(self, value, next_node=None):
        self.value = value
        self.next = next_node


class LinkedList:
    def __init__(self, values=()):
        self.head = None
        self.size = 0
        for value in reversed(list(values)):
            self.push(value)

    def push(self, value):
        self.head = Node(value, self.head)
        self.size += 1

    def pop(self):
        if self.head is None:
            raise IndexError("pop from empty list")
        value = self.head.value
        self.head = self.head.next
        self.size -= 1
        return value

    def reverse(self):
        previous, current = None, self.head
        while current is not None:
            following = current.next
            current.next = previous
            previous, current = current, following
        self.head = previous

    def index(self, value):
        position, node = 0, self.head
        while node is not None:
            if node.value == value:
                return position
            node = node.next
            position += 1
        return -1

    def to_list(self):
        values, node = [], self.head
        while node:
            values.append(node.value)
            node = node.next
        return values
