"""The turn runner against the in-memory store and a real SQLite audit log, without sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from signoff import Signoff, Text, ToolCall
from signoff.audit import open_audit
from signoff.core.closing import SUPERSEDED
from signoff.core.frames import ProtocolError
from signoff.core.turns import MAX_REPEATED_PROPOSALS
from signoff.engine import Engine
from signoff.engine.turns import SORRY
from signoff.store import SessionRecord
from signoff.store.memory import MemoryStore
from tests.support import SECRET


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class ScriptBot:
    """Proposes ``calls`` for every visitor message; then reports the last tool result."""

    def __init__(self, *calls: ToolCall, repeat: bool = False) -> None:
        self.calls = calls
        self.repeat = repeat
        self.steps = 0

    async def respond(self, conversation: list[dict[str, Any]]) -> AsyncIterator[Any]:
        self.steps += 1
        last = conversation[-1]
        if last["role"] == "tool" and not self.repeat:
            yield Text("after: " + json.loads(last["content"])["status"])
            return
        for call in self.calls:
            yield call


OPEN_WORLDS: list[World] = []


@pytest.fixture(autouse=True)
async def close_worlds() -> AsyncIterator[None]:
    """Every World's audit log is closed before the test's event loop is: a connection
    left open (a crash simulated mid-call) would outlive the loop it reports to."""
    yield
    while OPEN_WORLDS:
        await OPEN_WORLDS.pop().audit.close()


class World:
    def __init__(self, bot: Any, tmp_path: Any, store: MemoryStore | None = None) -> None:
        OPEN_WORLDS.append(self)
        self.app = Signoff(bot=bot)
        self.runs: list[str] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        runs = self.runs

        @self.app.action(kind="read")
        async def count(ctx: Any) -> int:
            runs.append("count")
            return 7

        @self.app.action(kind="destructive")
        async def purge(ctx: Any, n: int) -> dict[str, int]:
            runs.append(f"purge {n}")
            return {"purged": n}

        @self.app.action(kind="write", run_timeout=60)
        async def slow(ctx: Any) -> str:
            runs.append("slow")
            self.started.set()
            await self.release.wait()
            return "finished"

        self.clock = Clock()
        self.store = store or MemoryStore()
        self.audit = open_audit(f"sqlite:///{tmp_path}/audit.db", SECRET)
        self.engine = self.new_engine()

    def new_engine(self) -> Engine:
        """Another server over the same state, as after a restart."""
        return Engine(
            registry=self.app.registry,
            bot=self.app.bot,
            store=self.store,
            audit=self.audit,
            secret=SECRET,
            session_ttl=600,
            clock=self.clock,
        )

    async def session(self) -> SessionRecord:
        await self.audit.start()
        return await self.engine.open_session("demo", "u1")

    async def frames(self, session: SessionRecord) -> list[dict[str, Any]]:
        return [json.loads(t) for _, t in await self.store.frames_after(session.session_id, 0)]

    async def cards(self, session: SessionRecord) -> list[dict[str, Any]]:
        return [f for f in await self.frames(session) if f["type"] == "card"]

    async def crash_during(self, session: SessionRecord, card: dict[str, Any]) -> None:
        """Confirm the card, and kill the engine's work once the slow call has started."""
        decision = asyncio.create_task(
            self.engine.decide(session, card["card_id"], "confirm", card["args_hash"])
        )
        await self.started.wait()
        decision.cancel()  # the server dies mid-call
        with pytest.raises(asyncio.CancelledError):
            await decision

    async def bot_texts(self, session: SessionRecord) -> list[str]:
        return [f["text"] for f in await self.frames(session) if f["type"] == "message.end"]


async def test_reads_run_at_once_and_are_not_rerun_after_the_pause(tmp_path: Any) -> None:
    world = World(ScriptBot(ToolCall("count"), ToolCall("purge", {"n": 7})), tmp_path)
    session = await world.session()
    await world.engine.handle_message(session, "go", "c1")
    [card] = await world.cards(session)
    assert world.runs == ["count"]
    conversation = await world.store.load_conversation(session.session_id)
    assert [m["role"] for m in conversation] == ["user", "assistant", "tool"]
    # Another instance, as after a restart, resumes from the saved conversation.
    restarted = world.new_engine()
    await restarted.decide(session, card["card_id"], "confirm", card["args_hash"])
    assert world.runs == ["count", "purge 7"]
    conversation = await world.store.load_conversation(session.session_id)
    assert [m["role"] for m in conversation] == ["user", "assistant", "tool", "tool", "assistant"]
    assert await world.bot_texts(session) == ["after: ok"]


async def test_session_sum_counts_what_ran_in_earlier_turns(tmp_path: Any) -> None:
    world = World(ScriptBot(ToolCall("refund", {"amount": 60})), tmp_path)

    @world.app.action(kind="write", when="session_sum('amount') + card_sum('amount') > 100")
    async def refund(ctx: Any, amount: int) -> dict[str, int]:
        world.runs.append(f"refund {amount}")
        return {"refunded": amount}

    session = await world.session()
    await world.engine.handle_message(session, "refund 60", "c1")
    assert world.runs == ["refund 60"] and await world.cards(session) == []
    # 60 ran before: another 60 goes over 100, so it waits for the visitor.
    await world.engine.handle_message(session, "refund 60 more", "c2")
    [card] = await world.cards(session)
    assert world.runs == ["refund 60"] and card["status"] == "pending"


async def test_no_bot_run_between_accept_and_execution(tmp_path: Any) -> None:
    bot = ScriptBot(ToolCall("purge", {"n": 1}))
    world = World(bot, tmp_path)
    session = await world.session()
    await world.engine.handle_message(session, "go", "c1")
    [card] = await world.cards(session)
    steps_before = bot.steps

    original = world.app.registry.get("purge").func

    async def checking(ctx: Any, n: int) -> dict[str, int]:
        assert bot.steps == steps_before, "the bot ran between accept and execution"
        return await original(ctx, n)

    world.app.registry.get("purge").func = checking
    await world.engine.decide(session, card["card_id"], "confirm", card["args_hash"])
    assert world.runs == ["purge 1"]


async def test_a_bot_reproposing_declined_calls_is_answered_and_then_stopped(
    tmp_path: Any,
) -> None:
    bot = ScriptBot(ToolCall("purge", {"n": 3}), repeat=True)
    world = World(bot, tmp_path)
    session = await world.session()
    await world.engine.handle_message(session, "go", "c1")
    [card] = await world.cards(session)
    await world.engine.decide(session, card["card_id"], "cancel", card["args_hash"])
    assert len(await world.cards(session)) == 1  # no second card for the same calls
    conversation = await world.store.load_conversation(session.session_id)
    statuses = [json.loads(m["content"])["status"] for m in conversation if m["role"] == "tool"]
    assert statuses == ["declined"] + ["already_declined"] * MAX_REPEATED_PROPOSALS
    assert (await world.bot_texts(session))[-1].startswith("Alright, I won't do that")
    assert world.runs == []


async def test_crash_between_claim_and_finish_leaves_the_card_interrupted(tmp_path: Any) -> None:
    world = World(ScriptBot(ToolCall("slow")), tmp_path)
    session = await world.session()
    await world.engine.handle_message(session, "go", "c1")
    [card] = await world.cards(session)
    await world.crash_during(session, card)
    assert (await world.store.get_card(card["card_id"])).status == "running"
    survivor = world.new_engine()
    await survivor.sweep()
    await survivor.drain()
    assert (await world.store.get_card(card["card_id"])).status == "running"  # lease not over
    world.clock.now += 60 + 31
    await survivor.sweep()
    await survivor.drain()
    stored = await world.store.get_card(card["card_id"])
    assert stored.status == "interrupted"
    assert world.runs == ["slow"]  # never re-run by itself
    updates = [f for f in await world.frames(session) if f["type"] == "card.update"]
    assert updates[-1]["status"] == "interrupted"
    rows = await world.audit.rows(action="slow")
    assert [r["status"] for r in rows] == ["pending_confirmation", "interrupted"]
    with pytest.raises(ProtocolError) as again:
        await survivor.decide(session, card["card_id"], "confirm", card["args_hash"])
    assert again.value.code == "already_decided"
    assert world.runs == ["slow"]


async def test_a_new_message_withdraws_the_open_card(tmp_path: Any) -> None:
    world = World(ScriptBot(ToolCall("purge", {"n": 2})), tmp_path)
    session = await world.session()
    await world.engine.handle_message(session, "go", "c1")
    [first] = await world.cards(session)
    await world.engine.handle_message(session, "actually, again", "c2")
    stored = await world.store.get_card(first["card_id"])
    assert (stored.status, stored.reason) == ("cancelled", SUPERSEDED)
    with pytest.raises(ProtocolError) as late:
        await world.engine.decide(session, first["card_id"], "confirm", first["args_hash"])
    assert late.value.code == "already_decided"
    assert world.runs == []
    assert len(await world.cards(session)) == 2


async def test_invalid_args_and_unknown_actions_never_reach_a_card(tmp_path: Any) -> None:
    bot = ScriptBot(ToolCall("purge", {"n": "lots"}), ToolCall("format_disk", {}))
    world = World(bot, tmp_path)
    session = await world.session()
    await world.engine.handle_message(session, "go", "c1")
    assert await world.cards(session) == []
    conversation = await world.store.load_conversation(session.session_id)
    errors = [json.loads(m["content"]) for m in conversation if m["role"] == "tool"]
    assert [e["status"] for e in errors] == ["error", "error"]
    assert "purge: n:" in errors[0]["error"]
    assert "unknown action 'format_disk'" in errors[1]["error"]
    rows = await world.audit.rows(status="refused")
    assert [r["action"] for r in rows] == ["purge", "format_disk"]


async def test_a_failing_bot_gets_an_apology_not_a_crash(tmp_path: Any) -> None:
    class Broken:
        async def respond(self, conversation: Any) -> AsyncIterator[Any]:
            yield Text("Let me ")
            raise RuntimeError("model unavailable")

    world = World(Broken(), tmp_path)
    session = await world.session()
    await world.engine.handle_message(session, "go", "c1")
    texts = await world.bot_texts(session)
    assert texts == ["Let me ", "Sorry, something went wrong on my side. Please try again."]
    conversation = await world.store.load_conversation(session.session_id)
    assert conversation[-1] == {
        "role": "assistant",
        "content": "Sorry, something went wrong on my side. Please try again.",
    }


async def test_the_card_holds_exactly_the_shown_calls(tmp_path: Any) -> None:
    """If the held calls were altered after the card opened, nothing runs."""
    world = World(ScriptBot(ToolCall("purge", {"n": 1})), tmp_path)
    session = await world.session()
    await world.engine.handle_message(session, "go", "c1")
    [card] = await world.cards(session)
    world.store._cards[card["card_id"]].calls[0]["args"]["n"] = 1000
    updated = await world.engine.decide(session, card["card_id"], "confirm", card["args_hash"])
    assert updated.status == "failed"
    assert world.runs == []


async def test_results_shown_to_widgets_mask_sensitive_names(tmp_path: Any) -> None:
    world = World(ScriptBot(ToolCall("issue_key", {"owner": "ada"})), tmp_path)

    @world.app.action(kind="write")
    async def issue_key(ctx: Any, owner: str) -> dict[str, str]:
        return {"owner": owner, "api_key": "sk-live-123"}

    session = await world.session()
    await world.engine.handle_message(session, "go", "c1")
    [card] = await world.cards(session)
    await world.engine.decide(session, card["card_id"], "confirm", card["args_hash"])
    [done] = [f for f in await world.frames(session) if f.get("status") == "done"]
    assert done["results"][0]["result"] == {"owner": "ada", "api_key": "[redacted]"}
    conversation = await world.store.load_conversation(session.session_id)
    assert "sk-live-123" in conversation[2]["content"]  # the bot itself gets the real result
    [row] = await world.audit.rows(action="issue_key", status="success")
    assert row["result"] == {"owner": "ada", "api_key": "[redacted]"}


async def test_calls_that_ran_before_a_crash_stay_on_record(tmp_path: Any) -> None:
    world = World(ScriptBot(ToolCall("purge", {"n": 4}), ToolCall("slow")), tmp_path)
    session = await world.session()
    await world.engine.handle_message(session, "go", "c1")
    [card] = await world.cards(session)
    await world.crash_during(session, card)
    world.clock.now += 200
    survivor = world.new_engine()
    await survivor.sweep()
    await survivor.drain()
    assert world.runs == ["purge 4", "slow"]
    rows = await world.audit.rows(card_id=card["card_id"])
    assert [(r["action"], r["status"]) for r in rows] == [
        ("purge", "pending_confirmation"),
        ("slow", "pending_confirmation"),
        ("purge", "success"),
        ("slow", "interrupted"),
    ]
    conversation = await world.store.load_conversation(session.session_id)
    told = [json.loads(m["content"]) for m in conversation if m["role"] == "tool"]
    assert told[0] == {"status": "ok", "result": {"purged": 4}}
    assert told[1]["status"] == "error"


async def test_card_numbers_in_an_actions_error_stay_out_of_the_audit_log(tmp_path: Any) -> None:
    world = World(ScriptBot(ToolCall("charge", {"amount": 5})), tmp_path)

    @world.app.action(kind="write")
    async def charge(ctx: Any, amount: int) -> None:
        raise RuntimeError("card 4111 1111 1111 1111 was declined")

    session = await world.session()
    await world.engine.handle_message(session, "go", "c1")
    [card] = await world.cards(session)
    await world.engine.decide(session, card["card_id"], "confirm", card["args_hash"])
    [row] = await world.audit.rows(action="charge", status="failed")
    assert (row["status"], row["error"]) == ("failed", "card [redacted] was declined")


async def test_idempotency_keys_differ_across_sessions_and_steps(tmp_path: Any) -> None:
    keys: list[str] = []
    world = World(ScriptBot(ToolCall("stamp", {}, id="call_0")), tmp_path)

    @world.app.action(kind="write", confirm=False)
    async def stamp(ctx: Any) -> None:
        keys.append(ctx.idempotency_key)

    for client in ("a", "b"):
        session = await world.session()
        await world.engine.handle_message(session, "go", f"{client}1")
        await world.engine.handle_message(session, "again", f"{client}2")
    assert len(keys) == 4 and len(set(keys)) == 4


async def test_freeform_text_never_reaches_the_audit_log_in_results_or_errors(
    tmp_path: Any,
) -> None:
    words = "please leave it with the neighbour at number 12"
    world = World(ScriptBot(ToolCall("note", {"text": words, "lines": [words]})), tmp_path)

    @world.app.action(kind="write", freeform=["text", "lines"])
    async def note(ctx: Any, text: str, lines: list[str]) -> dict[str, str]:
        if len(ctx.card_id or "") > 0 and text.endswith("12"):
            raise ValueError(f"cannot store {text!r}")
        return {"text": text}

    session = await world.session()
    await world.engine.handle_message(session, "go", "c1")
    [card] = await world.cards(session)
    await world.engine.decide(session, card["card_id"], "confirm", card["args_hash"])
    [row] = await world.audit.rows(action="note", status="failed")
    assert words not in json.dumps(row, default=str)
    assert row["params"]["lines"]["length"] == len(json.dumps([words]))


async def test_a_confirm_racing_a_withdrawing_message_runs_at_most_once(tmp_path: Any) -> None:
    world = World(ScriptBot(ToolCall("purge", {"n": 5})), tmp_path)
    session = await world.session()
    await world.engine.handle_message(session, "go", "c1")
    [card] = await world.cards(session)
    outcomes = await asyncio.gather(
        world.engine.decide(session, card["card_id"], "confirm", card["args_hash"]),
        world.engine.handle_message(session, "never mind", "c2"),
        return_exceptions=True,
    )
    stored = await world.store.get_card(card["card_id"])
    if stored.status == "done":
        assert world.runs == ["purge 5"] and outcomes[0].status == "done"
    else:
        assert stored.status == "cancelled" and world.runs == []
        assert isinstance(outcomes[0], ProtocolError)
        assert outcomes[0].code == "already_decided"


async def test_a_confirm_racing_the_sweeper_after_the_deadline_never_runs(tmp_path: Any) -> None:
    world = World(ScriptBot(ToolCall("purge", {"n": 5})), tmp_path)
    session = await world.session()
    await world.engine.handle_message(session, "go", "c1")
    [card] = await world.cards(session)
    world.clock.now += 601  # past the card's timeout (600 s)
    outcomes = await asyncio.gather(
        world.engine.decide(session, card["card_id"], "confirm", card["args_hash"]),
        world.engine.sweep(),
        return_exceptions=True,
    )
    await world.engine.drain()
    assert isinstance(outcomes[0], ProtocolError)
    assert outcomes[0].code in {"expired", "already_decided"}
    assert world.runs == []
    assert (await world.store.get_card(card["card_id"])).status == "expired"
    rows = await world.audit.rows(action="purge")
    # Expired once, by one of them.
    assert [r["status"] for r in rows] == ["pending_confirmation", "expired"]


async def test_an_audit_log_that_cannot_write_opens_no_card(tmp_path: Any) -> None:
    world = World(ScriptBot(ToolCall("purge", {"n": 3})), tmp_path)
    session = await world.session()

    async def down(*entries: Any) -> None:
        raise OSError("the audit database is unreachable")

    world.audit.record = down  # type: ignore[method-assign]
    await world.engine.handle_message(session, "go", "c1")
    assert await world.cards(session) == []
    assert await world.store.open_cards(session.session_id) == []
    assert world.runs == []
    assert (await world.bot_texts(session))[-1] == SORRY


async def test_refused_attempts_take_a_bounded_number_of_rows_per_session(tmp_path: Any) -> None:
    """Attempts spread over many cards of one session meet the session's bound too."""
    from signoff.core.deciders import Decider
    from signoff.engine.records import DOOR_REFUSALS_BURST, SESSION_REFUSALS_BURST

    world = World(ScriptBot(ToolCall("purge", {"n": 1})), tmp_path)
    session = await world.session()
    for n in range(6):
        await world.engine.handle_message(session, f"go {n}", f"c{n}")
    card_ids = [c["card_id"] for c in await world.cards(session)]
    assert len(card_ids) == 6
    for card_id in card_ids:
        for _ in range(DOOR_REFUSALS_BURST):
            await world.engine.refuse_attempt(card_id, Decider("user:forger"), "forged")
    refused = [r for r in await world.audit.rows() if r["status"] == "refused"]
    assert len(refused) == SESSION_REFUSALS_BURST
    assert len(refused) < len(card_ids) * DOOR_REFUSALS_BURST


async def test_a_step_over_the_call_limit_opens_no_card_and_audits_a_bounded_number(
    tmp_path: Any,
) -> None:
    from signoff.core.turns import MAX_CALLS_PER_STEP

    calls = [ToolCall("purge", {"n": n}) for n in range(10 * MAX_CALLS_PER_STEP)]
    world = World(ScriptBot(*calls), tmp_path)
    session = await world.session()
    await world.engine.handle_message(session, "purge everything", "c1")
    assert not await world.cards(session)
    assert world.runs == []
    rows = await world.audit.rows()
    assert len(rows) == MAX_CALLS_PER_STEP
    assert {r["status"] for r in rows} == {"refused"}
    assert f"at most {MAX_CALLS_PER_STEP} calls" in rows[0]["error"]
    assert (await world.bot_texts(session))[-1] == "after: error"


class SameIdBot:
    """Numbers its calls from 0 on every step, as some local models do."""

    async def respond(self, conversation: list[dict[str, Any]]) -> AsyncIterator[Any]:
        last = conversation[-1]
        if last["role"] == "tool":
            yield Text("told: " + json.loads(last["content"])["status"])
            return
        yield ToolCall("wipe", {"target": last["content"]}, id="call_0")


async def test_a_call_id_the_conversation_already_holds_is_replaced(tmp_path: Any) -> None:
    from tests.support import running, settings, widget

    app = Signoff(bot=SameIdBot())

    @app.action(kind="destructive")
    async def wipe(ctx: Any, target: str) -> str:
        """Wipe a disk."""
        return "wiped"

    async with running(app, settings(tmp_path)) as server, widget(server) as w:
        await w.hello()
        for target, decision, told in (("a", "confirm", "ok"), ("b", "cancel", "declined")):
            await w.say(target)
            card = await w.card("pending")
            await w.decide(card, decision)
            # Each card's outcome reaches the bot: the second is not taken for the first.
            await w.bot_says(f"told: {told}")
        conversation = await server.engine.store.load_conversation(w.welcome["session_id"])
    ids = [c["id"] for m in conversation for c in m.get("tool_calls") or ()]
    assert ids[0] == "call_0" and len(set(ids)) == 2


async def test_a_session_that_ends_while_its_call_runs_gets_no_bot_step_after_it(
    tmp_path: Any,
) -> None:
    """No zombie turn: the visitor confirmed, then their session ended (logged out,
    expired) while the call ran; the call finishes, and the bot is not run for them."""
    bot = ScriptBot(ToolCall("slow"))
    world = World(bot, tmp_path)
    session = await world.session()
    await world.engine.handle_message(session, "go", "c1")
    [card] = await world.cards(session)
    steps = bot.steps
    decision = asyncio.create_task(
        world.engine.decide(session, card["card_id"], "confirm", card["args_hash"])
    )
    await world.started.wait()
    await world.store.end_session(session.session_id, "expired")
    world.release.set()
    await decision
    assert world.runs == ["slow"]
    assert bot.steps == steps
