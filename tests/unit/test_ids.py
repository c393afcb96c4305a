"""The engine's ids: sessions' unguessable, messages' unique."""

from __future__ import annotations

import os

from signoff.engine import ids


def test_message_ids_are_unique() -> None:
    made = [ids.new_id("m") for _ in range(10_000)]
    assert len(set(made)) == len(made)
    assert all(i.startswith("m_") for i in made)


def test_a_forked_process_takes_a_prefix_of_its_own() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first id, to the parent
        os.write(write, ids.new_id("m").encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.waitpid(pid, 0)
    os.close(read)
    mine = ids.new_id("m")
    assert child.split("_")[1][:12] != mine.split("_")[1][:12]


def test_session_ids_are_random() -> None:
    first, second = ids.unguessable_id("s"), ids.unguessable_id("s")
    assert first != second and len(first) == len("s_") + 16
