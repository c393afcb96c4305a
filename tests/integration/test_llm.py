"""The OpenAI-compatible bot against a stand-in model server, through the real widget protocol."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from signoff import Signoff
from signoff.audit import open_audit
from signoff.bots.llm import BUSY, CUT_OFF, NO_ANSWER, TOO_SLOW, UNAVAILABLE
from signoff.config import LLMSettings
from signoff.core.tools import GATED_NOTE
from signoff.demo import demo_app
from signoff.engine import Engine
from signoff.engine.turns import TOO_MANY_STEPS
from signoff.store.memory import MemoryStore
from tests.llm_standin import MODEL, Reply, Seen, StandInModel, answer, calls, chunk, failure
from tests.support import SECRET, Server, Widget, audit_statuses, running, settings, widget

ADA = {"order_id": 1001, "customer": "Ada Lovelace", "total": 89.5}
ALAN = {"order_id": 1003, "customer": "Alan Turing", "total": 34.99}


def llm(model: StandInModel, **overrides: Any) -> LLMSettings:
    """Short timeouts and no retries unless a test asks: every test stays fast."""
    config = LLMSettings(
        base_url=model.base_url, model=MODEL, api_key="sk-test", timeout=2.0, max_retries=0
    )
    return replace(config, **overrides)


@asynccontextmanager
async def shop(model: StandInModel, tmp_path: Any, **overrides: Any) -> AsyncIterator[Server]:
    """The demo shop served with its bot on the stand-in model."""
    config = llm(model, **overrides)
    async with running(demo_app(config), settings(tmp_path, llm=config)) as server:
        yield server


@asynccontextmanager
async def chatting(server: Server) -> AsyncIterator[Widget]:
    async with widget(server) as visitor:
        await visitor.hello()
        yield visitor


def frames_of(visitor: Widget, kind: str) -> list[dict[str, Any]]:
    return [f for f in visitor.frames if f["type"] == kind]


# Streaming and tools -------------------------------------------------------------------


async def test_a_plain_answer_streams_to_the_widget_as_it_arrives(
    model: StandInModel, tmp_path: Any
) -> None:
    reply = answer("Hello", ", I am ", "the shop assistant.")
    reply.hold_after = 2  # the stand-in waits after "Hello"
    model.then(reply)
    async with shop(model, tmp_path) as server, chatting(server) as visitor:
        await visitor.say("hi")
        first = await visitor.expect(lambda f: f["type"] == "message.delta")
        assert first["text"] == "Hello"
        assert frames_of(visitor, "message.end") == []  # shown before the model is done
        reply.release.set()
        end = await visitor.bot_says("shop assistant")
        assert end["text"] == "Hello, I am the shop assistant."
        # Pieces that arrive together may share a frame; the text and its order are kept.
        deltas = [f["text"] for f in frames_of(visitor, "message.delta")]
        assert deltas[0] == "Hello" and end["text"].startswith("".join(deltas))

    [request] = model.requests
    assert request.headers["authorization"] == "Bearer sk-test"
    assert (request.body["model"], request.body["stream"]) == (MODEL, True)
    system, *rest = request.messages
    assert system["role"] == "system" and "Acme demo shop" in system["content"]
    assert rest == [{"role": "user", "content": "hi"}]
    tools = {t["function"]["name"]: t["function"] for t in request.body["tools"]}
    assert set(tools) == {
        "list_orders",
        "get_order",
        "cancel_order",
        "list_spam",
        "delete_spam",
        "refund",
        "add_note",
    }
    assert tools["cancel_order"]["parameters"]["required"] == ["order_id", "customer", "total"]
    assert GATED_NOTE in tools["cancel_order"]["description"]
    assert tools["list_orders"]["description"] == "List the shop's orders."


async def test_a_gated_call_is_confirmed_run_once_and_its_result_goes_back_to_the_model(
    model: StandInModel, tmp_path: Any
) -> None:
    model.then(
        calls(("get_order", {"order_id": 1001}), text=("Let me look that up. ",)),
        calls(("cancel_order", ADA), text=("Please confirm below.",)),
        answer("Order #1001 is cancelled."),
    )
    async with shop(model, tmp_path) as server, chatting(server) as visitor:
        action = server.engine.registry.get("cancel_order")
        original = action.func
        requests_when_run: list[int] = []

        async def counting(ctx: Any, **args: Any) -> Any:
            requests_when_run.append(len(model.requests))
            return await original(ctx, **args)

        action.func = counting
        await visitor.say("please cancel order 1001")
        card = await visitor.card("pending")
        assert (card["title"], card["kind"]) == ("Cancel order", "destructive")
        assert card["text"] == "Cancel order #1001 for Ada Lovelace, total $89.50?"
        assert card["actions"][0]["args"] == ADA
        await visitor.decide(card)
        done = await visitor.update(card["card_id"], "done")
        assert done["results"] == [
            {
                "action": "cancel_order",
                "status": "done",
                "result": {"order_id": 1001, "status": "cancelled"},
                "message": "Order #1001 cancelled",
            }
        ]
        await visitor.bot_says("Order #1001 is cancelled.")
        texts = [f["text"] for f in frames_of(visitor, "message.end")]
        assert texts == [
            "Let me look that up. ",
            "Please confirm below.",
            "Order #1001 is cancelled.",
        ]
        statuses = await audit_statuses(server, "cancel_order")
        assert statuses == ["pending_confirmation", "success"]

    # The call ran once, before the model was asked anything more: no re-planning.
    assert requests_when_run == [2]
    assert len(model.requests) == 3
    assert model.requests[1].tool_results() == [
        {"status": "ok", "result": {**ADA, "status": "open"}}
    ]
    last = model.requests[2].messages
    [held] = last[-2]["tool_calls"]
    assert held["function"]["name"] == "cancel_order"
    assert json.loads(held["function"]["arguments"]) == ADA
    assert model.requests[2].tool_results() == [
        {"status": "ok", "result": {"order_id": 1001, "status": "cancelled"}}
    ]


async def test_parallel_gated_calls_in_one_response_are_one_chain_card(
    model: StandInModel, tmp_path: Any
) -> None:
    model.then(
        calls(("cancel_order", ADA), ("cancel_order", ALAN), interleave=True),
        answer("Both are cancelled."),
    )
    async with shop(model, tmp_path) as server, chatting(server) as visitor:
        await visitor.say("cancel 1001 and 1003")
        card = await visitor.card("pending")
        assert card["title"] == "Confirm 2 actions"
        assert [a["args"] for a in card["actions"]] == [ADA, ALAN]
        await visitor.decide(card)
        done = await visitor.update(card["card_id"], "done")
        assert [r["status"] for r in done["results"]] == ["done", "done"]
        await visitor.bot_says("Both are cancelled.")
        assert len(frames_of(visitor, "card")) == 1

    step = model.requests[1].messages[-3]
    assert [json.loads(c["function"]["arguments"]) for c in step["tool_calls"]] == [ADA, ALAN]
    assert model.requests[1].tool_results() == [
        {"status": "ok", "result": {"order_id": 1001, "status": "cancelled"}},
        {"status": "ok", "result": {"order_id": 1003, "status": "cancelled"}},
    ]


def delete_what_was_listed(seen: Seen) -> Reply:
    """The model's second step: delete exactly the spam the read returned."""
    [listed] = seen.tool_results()
    return calls(("delete_spam", {"message_ids": [m["id"] for m in listed["result"]]}))


async def test_a_read_runs_at_once_and_the_card_shows_the_real_count(
    model: StandInModel, tmp_path: Any
) -> None:
    model.then(calls(("list_spam", {})), delete_what_was_listed, answer("The spam is gone."))
    async with shop(model, tmp_path) as server, chatting(server) as visitor:
        await visitor.say("clean up my spam folder")
        card = await visitor.card("pending")
        assert card["text"] == "Delete 7 spam messages for good?"
        assert card["actions"][0]["args"] == {"message_ids": list(range(501, 508))}
        await visitor.decide(card)
        done = await visitor.update(card["card_id"], "done")
        assert done["results"][0]["result"] == {"deleted": 7}
        await visitor.bot_says("The spam is gone.")
        assert await audit_statuses(server, "list_spam") == ["success"]
        statuses = await audit_statuses(server, "delete_spam")
        assert statuses == ["pending_confirmation", "success"]


async def test_cancel_runs_nothing_and_the_model_is_told_the_user_declined(
    model: StandInModel, tmp_path: Any
) -> None:
    model.then(calls(("cancel_order", ADA)), answer("Alright, order #1001 stays open."))
    async with shop(model, tmp_path) as server, chatting(server) as visitor:
        await visitor.say("cancel order 1001")
        card = await visitor.card("pending")
        await visitor.decide(card, "cancel")
        await visitor.update(card["card_id"], "cancelled")
        await visitor.bot_says("order #1001 stays open")
        statuses = await audit_statuses(server, "cancel_order")
        assert statuses == ["pending_confirmation", "cancelled"]
    assert model.requests[1].tool_results() == [
        {"status": "declined", "reason": "the user declined", "args_hash": card["args_hash"]}
    ]


async def test_an_expired_card_is_reported_to_the_model_which_carries_on(
    model: StandInModel, tmp_path: Any
) -> None:
    """An app with no bot of its own gets the configured model's."""
    app = Signoff()

    @app.action(kind="destructive", timeout=0.3, message="Wipe {{ target }}?")
    async def wipe(ctx: Any, target: str) -> dict[str, str]:
        raise AssertionError("an expired card must never run")

    model.then(calls(("wipe", {"target": "disk"})), answer("Nobody confirmed, so I left it."))
    config = llm(model)
    async with running(app, settings(tmp_path, llm=config)) as server, chatting(server) as visitor:
        await visitor.say("wipe the disk")
        card = await visitor.card("pending")
        await visitor.update(card["card_id"], "expired")
        await visitor.bot_says("Nobody confirmed")
    assert model.requests[1].tool_results() == [
        {
            "status": "declined",
            "reason": "the confirmation expired before anyone decided",
            "args_hash": card["args_hash"],
        }
    ]


async def test_a_turn_paused_on_a_card_resumes_after_a_restart_with_nothing_lost(
    model: StandInModel, tmp_path: Any
) -> None:
    store = MemoryStore()
    audit = open_audit(f"sqlite:///{tmp_path}/audit.db", SECRET)
    await audit.start()

    def start_server() -> Engine:
        """A fresh process: a new app and bot over the same live state."""
        app = demo_app(llm(model))
        assert app.bot is not None
        return Engine(
            registry=app.registry,
            bot=app.bot,
            store=store,
            audit=audit,
            secret=SECRET,
            session_ttl=600,
        )

    model.then(calls(("list_spam", {})), delete_what_was_listed, answer("Done, 7 deleted."))
    before = start_server()
    session = await before.open_session("demo", "u1")
    await before.handle_message(session, "delete spam", "c1")
    [card] = [
        json.loads(text)
        for _, text in await store.frames_after(session.session_id, 0)
        if json.loads(text)["type"] == "card"
    ]
    paused = await store.load_conversation(session.session_id)

    after = start_server()
    await after.decide(session, card["card_id"], "confirm", card["args_hash"])
    await audit.close()

    assert len(model.requests) == 3
    resumed = model.requests[2].messages
    assert resumed[1 : len(paused) + 1] == paused  # the paused turn, as it was saved
    assert [m["role"] for m in resumed] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
    ]
    assert model.requests[2].tool_results() == [{"status": "ok", "result": {"deleted": 7}}]
    conversation = await store.load_conversation(session.session_id)
    assert conversation[-1] == {"role": "assistant", "content": "Done, 7 deleted."}


# Failures ------------------------------------------------------------------------------


async def say_and_hear(server: Server, text: str) -> str:
    """One visitor message and its whole turn; the text of the bot's last message."""
    async with chatting(server) as visitor:
        await visitor.say(text)
        await visitor.expect(lambda f: f["type"] == "message" and f["role"] == "user")
        await server.engine.drain()
        await visitor.quiet(0.2)
        assert frames_of(visitor, "card") == []
        return str(frames_of(visitor, "message.end")[-1]["text"])


async def test_a_model_that_does_not_answer_in_time_gets_an_apology_and_the_next_turn_works(
    model: StandInModel, tmp_path: Any
) -> None:
    model.then(Reply(delay=5), answer("I'm back."))
    async with shop(model, tmp_path, timeout=1.0) as server, chatting(server) as visitor:
        await visitor.say("hello?")
        await visitor.bot_says(TOO_SLOW)
        await visitor.say("hello again?")
        await visitor.bot_says("I'm back.")


async def test_a_timed_out_request_is_retried_by_the_client(
    model: StandInModel, tmp_path: Any
) -> None:
    model.then(Reply(delay=5), answer("Sorry for the wait."))
    async with shop(model, tmp_path, timeout=1.0, max_retries=1) as server:
        assert await say_and_hear(server, "hello?") == "Sorry for the wait."
    assert len(model.requests) == 2


async def test_a_stream_that_stalls_keeps_what_was_said_and_apologises(
    model: StandInModel, tmp_path: Any
) -> None:
    stalled = answer("The first half", " and never the rest.")
    stalled.hold_after = 2
    model.then(stalled)
    async with shop(model, tmp_path, timeout=1.0, max_retries=2) as server:
        assert await say_and_hear(server, "tell me") == f"The first half\n\n{TOO_SLOW}"
    assert len(model.requests) == 1  # a stream already under way is not asked again


async def test_a_429_is_retried_after_its_retry_after(model: StandInModel, tmp_path: Any) -> None:
    model.then(failure(429, {"retry-after": "0.4"}), answer("Thanks for waiting."))
    async with shop(model, tmp_path, max_retries=2) as server:
        assert await say_and_hear(server, "hi") == "Thanks for waiting."
    first, second = model.requests
    assert second.at - first.at >= 0.35


async def test_rate_limited_beyond_the_retries_is_a_busy_message(
    model: StandInModel, tmp_path: Any
) -> None:
    model.then(failure(429, {"retry-after": "0.05"}), failure(429, {"retry-after": "0.05"}))
    async with shop(model, tmp_path, max_retries=1) as server:
        assert await say_and_hear(server, "hi") == BUSY


async def test_a_server_error_is_retried_then_answered(model: StandInModel, tmp_path: Any) -> None:
    model.then(failure(503, {"retry-after-ms": "50"}), failure(500), answer("Up again."))
    async with shop(model, tmp_path, max_retries=2) as server:
        assert await say_and_hear(server, "hi") == "Up again."
    assert len(model.requests) == 3


async def test_server_errors_beyond_the_retries_and_refusals_are_an_apology(
    model: StandInModel, tmp_path: Any
) -> None:
    model.then(failure(502), failure(401, message="bad key"))
    async with shop(model, tmp_path, max_retries=0) as server:
        assert await say_and_hear(server, "hi") == UNAVAILABLE
    async with shop(model, tmp_path, max_retries=2) as server:
        assert await say_and_hear(server, "hi") == UNAVAILABLE  # a 401 is not retried
    assert len(model.requests) == 2


async def test_an_error_event_or_an_early_end_of_the_stream_drops_the_calls(
    model: StandInModel, tmp_path: Any
) -> None:
    erroring = Reply([chunk({"content": "Hmm"}), json.dumps({"error": {"message": "overloaded"}})])
    complete = calls(("cancel_order", ADA), text=("I'll cancel it.",))
    cut = Reply(complete.events[:-2])  # the calls whole, but no finish_reason and no [DONE]
    model.then(erroring, cut)
    async with shop(model, tmp_path) as server:
        assert await say_and_hear(server, "hi") == f"Hmm\n\n{UNAVAILABLE}"
        assert await say_and_hear(server, "cancel order 1001") == f"I'll cancel it.\n\n{CUT_OFF}"
        assert await audit_statuses(server, "cancel_order") == []


async def test_an_empty_response_is_a_clear_message(model: StandInModel, tmp_path: Any) -> None:
    model.then(Reply([chunk({"role": "assistant"}), chunk({}, "stop"), "[DONE]"]))
    async with shop(model, tmp_path) as server:
        assert await say_and_hear(server, "hi") == NO_ANSWER


async def test_malformed_call_json_goes_back_to_the_model_and_never_reaches_a_card(
    model: StandInModel, tmp_path: Any
) -> None:
    model.then(
        calls(("cancel_order", '{"order_id": 1001, "customer": "Ada'), text=("On it.",)),
        answer("Sorry, I garbled that. Which order?"),
    )
    async with shop(model, tmp_path) as server:
        assert await say_and_hear(server, "cancel 1001") == "Sorry, I garbled that. Which order?"
        assert await audit_statuses(server, "cancel_order") == ["refused"]
    [error] = model.requests[1].tool_results()
    assert error["status"] == "error"
    assert error["error"].startswith("cancel_order: the arguments are not valid JSON")
    [step] = model.requests[1].messages[-2]["tool_calls"]
    assert step["function"]["arguments"] == "{}"  # the history stays valid JSON


async def test_an_unknown_action_goes_back_to_the_model_as_an_error(
    model: StandInModel, tmp_path: Any
) -> None:
    model.then(calls(("format_disk", {"really": True})), answer("I can't do that here."))
    async with shop(model, tmp_path) as server:
        assert await say_and_hear(server, "format the disk") == "I can't do that here."
        assert await audit_statuses(server, "format_disk") == ["refused"]
    assert model.requests[1].tool_results() == [
        {"status": "error", "error": "unknown action 'format_disk'"}
    ]


async def test_args_that_fail_validation_never_reach_a_card_and_the_model_can_correct_them(
    model: StandInModel, tmp_path: Any
) -> None:
    model.then(
        calls(("cancel_order", {"order_id": "the first one"})),
        calls(("cancel_order", ADA)),
    )
    async with shop(model, tmp_path) as server, chatting(server) as visitor:
        await visitor.say("cancel my first order")
        card = await visitor.card("pending")
        assert card["actions"][0]["args"] == ADA
        await visitor.quiet(0.2)
        assert len(frames_of(visitor, "card")) == 1
        statuses = await audit_statuses(server, "cancel_order")
        assert statuses == ["refused", "pending_confirmation"]
    [error] = model.requests[1].tool_results()
    assert error["status"] == "error"
    assert "order_id" in error["error"] and "customer" in error["error"]


async def test_a_model_that_keeps_failing_its_calls_is_stopped(
    model: StandInModel, tmp_path: Any
) -> None:
    model.then(*[calls(("cancel_order", "{oops")) for _ in range(8)])
    async with shop(model, tmp_path) as server:
        assert await say_and_hear(server, "cancel") == TOO_MANY_STEPS
    assert len(model.requests) == 8
