"""The chat history of A2A conversations, keyed by ``contextId``, bounded in both directions.

A2A callers send one message per turn and name the conversation with ``contextId``; the ``ResponsesAgent`` wants the
whole conversation as its ``input``. So each finished turn (the user's message and the agent's output items: its
tool calls, their results and its answer) is remembered here and put in front of the next question of the same
context. Memory stays bounded: at most ``max_contexts`` conversations (the least recently used one is forgotten
first) of at most ``max_turns`` turns each (the oldest turn is dropped first). A forgotten conversation simply starts
afresh; nothing fails.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from typing import Any

Item = dict[str, Any]


class ConversationMemory:
    """``contextId`` -> the last ``max_turns`` turns (each a list of Responses input items), LRU over contexts."""

    def __init__(self, max_contexts: int, max_turns: int) -> None:
        if max_contexts < 1 or max_turns < 1:
            raise ValueError("max_contexts and max_turns must be at least 1")
        self.max_contexts = max_contexts
        self.max_turns = max_turns
        self._contexts: OrderedDict[str, deque[list[Item]]] = OrderedDict()
        self._lock = threading.Lock()  # turns finish on the event loop, but agents may run on threads
        self.evicted = 0  # conversations forgotten to stay within max_contexts

    def __len__(self) -> int:
        return len(self._contexts)

    def __contains__(self, context_id: object) -> bool:
        return context_id in self._contexts

    def history(self, context_id: str) -> list[Item]:
        """The remembered items of ``context_id``, oldest first (empty for a new or forgotten conversation)."""
        with self._lock:
            turns = self._contexts.get(context_id)
            if turns is None:
                return []
            self._contexts.move_to_end(context_id)
            return [item for turn in turns for item in turn]

    def remember(self, context_id: str, turn: list[Item]) -> None:
        """Add one finished turn; drop the oldest turn and the least recently used conversation past the bounds."""
        with self._lock:
            turns = self._contexts.get(context_id)
            if turns is None:
                turns = self._contexts[context_id] = deque(maxlen=self.max_turns)
            self._contexts.move_to_end(context_id)
            turns.append(turn)
            while len(self._contexts) > self.max_contexts:
                self._contexts.popitem(last=False)
                self.evicted += 1
