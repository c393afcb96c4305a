"""The memory store keeps a conversation's messages once: a turn's load shares them."""

from __future__ import annotations

from signoff.core.conversation import assistant_message, user_message, window
from signoff.store.memory import MemoryStore
from tests.store.test_store_contract import session


async def test_turns_share_the_kept_messages_and_a_save_copies_only_new_ones() -> None:
    store = MemoryStore()
    await store.create_session(session())
    turns = [[user_message(f"hi {n}"), assistant_message(f"hello {n}", [])] for n in range(3)]
    await store.save_conversation("s1", [*turns[0], *turns[1]])
    loaded = await store.load_conversation("s1")
    await store.save_conversation("s1", window([*loaded, *turns[2]], max_messages=4))

    again = await store.load_conversation("s1")
    assert again == [*turns[1], *turns[2]]
    assert again[:2] == loaded[2:]
    assert all(a is b for a, b in zip(again[:2], loaded[2:], strict=True))  # kept once
    assert all(a is not b for a, b in zip(again[2:], turns[2], strict=True))  # new: copies
    assert again is not loaded


async def test_a_save_that_is_no_append_to_what_is_kept_copies_every_message() -> None:
    store = MemoryStore()
    await store.create_session(session())
    await store.save_conversation("s1", [user_message("one"), user_message("two")])
    loaded = await store.load_conversation("s1")
    rebuilt = [loaded[0], user_message("three")]  # without the last message kept
    await store.save_conversation("s1", rebuilt)
    again = await store.load_conversation("s1")
    assert again == [user_message("one"), user_message("three")]
    assert all(a is not b for a, b in zip(again, rebuilt, strict=True))
