"""The ids the engine gives what it makes.

A session's and a conversation's ids are unguessable: random, read from the system's
source. A message's and a tool call's id need only be unique, so they are a random prefix
of this process and a counter: reading the random source for each was 6% of a message
round trip's CPU. A forked process takes a prefix of its own.
"""

from __future__ import annotations

import itertools
import os
import secrets


def unguessable_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(12)}"


class _Counter:
    def __init__(self) -> None:
        self.renew()

    def renew(self) -> None:
        self.process = secrets.token_urlsafe(9)
        self.numbers = itertools.count(1)


_counter = _Counter()
os.register_at_fork(after_in_child=_counter.renew)


def new_id(prefix: str) -> str:
    """Unique across processes and time; not secret."""
    return f"{prefix}_{_counter.process}{next(_counter.numbers):x}"
