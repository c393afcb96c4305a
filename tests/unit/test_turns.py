"""plan_step: which calls of a bot step run now, become one card, or are refused."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from signoff.core.actions import ActionError, Registry, make_action, team
from signoff.core.canonical import args_hash
from signoff.core.conversation import (
    ToolCall,
    assistant_message,
    declined_in_turn,
    tool_message,
    user_message,
)
from signoff.core.turns import MAX_CALLS_PER_STEP, MAX_REPEATED_PROPOSALS, StepPlan, plan_step


async def list_orders(ctx: Any, status: str = "open") -> list[Any]:
    return []


async def cancel_order(ctx: Any, order_id: int, customer: str, total: float) -> dict[str, Any]:
    return {}


async def refund(ctx: Any, order_id: int, amount: float, note: str = "") -> dict[str, Any]:
    return {}


async def add_note(ctx: Any, order_id: int, text: str) -> dict[str, Any]:
    return {}


async def grant_access(ctx: Any, user: str) -> dict[str, Any]:
    return {}


async def tag_order(ctx: Any, order_id: int) -> dict[str, Any]:
    return {}


@pytest.fixture
def registry() -> Registry:
    registry = Registry()
    registry.add(make_action(list_orders, kind="read"))
    registry.add(
        make_action(
            cancel_order,
            kind="destructive",
            message="Cancel order #{{ order_id }} for {{ customer }}, total {{ total|money }}?",
            timeout=300,
        )
    )
    registry.add(
        make_action(
            refund,
            kind="write",
            message="Refund {{ amount|money }} on order {{ order_id }}?",
            approver=team("support-lead", "finance", when="amount > 100"),
            when="amount > 0",
        )
    )
    registry.add(make_action(add_note, kind="write", confirm=False))
    registry.add(make_action(grant_access, kind="write", approver=team("finance", "security")))
    registry.add(make_action(tag_order, kind="write", timeout=60))
    return registry


def plan(registry: Registry, *calls: ToolCall, declined: set[str] | None = None) -> StepPlan:
    return plan_step(registry, list(calls), declined or set(), 0)


def expected_hash(calls: Sequence[Mapping[str, Any]]) -> str:
    canonical = json.dumps(calls, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


CANCEL = ToolCall("cancel_order", {"order_id": 1001, "customer": "Zoë", "total": 89.5}, "t-c")
REFUND_SMALL = ToolCall("refund", {"order_id": 1002, "amount": 20}, "t-r")
REFUND_BIG = ToolCall("refund", {"order_id": 1002, "amount": "250"}, "t-R")


def test_empty_step() -> None:
    result = plan(Registry())
    assert result == StepPlan()


def test_reads_run_now_without_a_card(registry: Registry) -> None:
    result = plan(registry, ToolCall("list_orders", {}, "t1"), ToolCall("list_orders", {}, "t2"))
    assert [c.tool_call_id for c in result.run_now] == ["t1", "t2"]
    assert result.run_now[0].args == {"status": "open"}
    assert result.run_now[0].action is registry.get("list_orders")
    assert result.card is None
    assert result.refused == []


def test_auto_calls_run_now(registry: Registry) -> None:
    result = plan(
        registry,
        ToolCall("add_note", {"order_id": 1, "text": "hi"}, "t1"),
        ToolCall("refund", {"order_id": 1, "amount": 0}, "t2"),  # when false
    )
    assert [c.tool_call_id for c in result.run_now] == ["t1", "t2"]
    assert result.card is None


def test_a_bot_may_ask_for_a_card_but_never_skip_one(registry: Registry) -> None:
    # An agent framework's own approval flag on a tool: a read, and a write that would
    # run at once, get the visitor's card; a team's card stays the team's.
    result = plan(
        registry,
        ToolCall("list_orders", {}, "t1", needs_card=True),
        ToolCall("add_note", {"order_id": 1, "text": "hi"}, "t2", needs_card=True),
        ToolCall("list_orders", {}, "t3"),
    )
    assert [c.tool_call_id for c in result.run_now] == ["t3"]
    assert result.card is not None and result.card.approver == "user"
    assert [c.tool_call_id for c in result.card.calls] == ["t1", "t2"]
    teams = plan(registry, ToolCall("grant_access", {"user": "bo"}, "t4", needs_card=True))
    assert teams.card is not None and teams.card.approver == "team"


def test_one_gated_call_becomes_a_card(registry: Registry) -> None:
    result = plan(registry, CANCEL)
    assert result.run_now == []
    card = result.card
    assert card is not None
    assert [c.tool_call_id for c in card.calls] == ["t-c"]
    assert card.kind == "destructive"
    assert card.approver == "user"
    assert card.levels == []
    assert card.title == "Cancel order"
    assert card.text == "Cancel order #1001 for Zoë, total $89.50?"
    assert card.timeout == 300
    canonical = [{"action": "cancel_order", "args": dict(CANCEL.args)}]
    assert card.canonical_calls == canonical
    assert card.args_hash == expected_hash(canonical)
    assert not result.already_declined and not result.stop_turn


def test_reads_and_gated_calls_of_one_step_are_split(registry: Registry) -> None:
    result = plan(registry, ToolCall("list_orders", {}, "t-l"), CANCEL, REFUND_SMALL)
    assert [c.tool_call_id for c in result.run_now] == ["t-l"]
    assert result.card is not None
    assert [c.tool_call_id for c in result.card.calls] == ["t-c", "t-r"]


def test_gated_calls_of_one_step_become_one_chain(registry: Registry) -> None:
    second = ToolCall("cancel_order", {"order_id": 1002, "customer": "Bo", "total": 5}, "t-2")
    third = ToolCall("tag_order", {"order_id": 1003}, "t-3")
    result = plan(registry, CANCEL, second, third)
    card = result.card
    assert card is not None
    assert [c.tool_call_id for c in card.calls] == ["t-c", "t-2", "t-3"]
    assert card.title == "Confirm 3 actions"
    assert card.kind == "destructive"
    assert card.approver == "user"
    assert card.timeout == 60  # the shortest of the actions' timeouts
    assert card.args_hash == expected_hash(
        [
            {
                "action": "cancel_order",
                "args": {"order_id": 1001, "customer": "Zoë", "total": 89.5},
            },
            {"action": "cancel_order", "args": {"order_id": 1002, "customer": "Bo", "total": 5.0}},
            {"action": "tag_order", "args": {"order_id": 1003}},
        ]
    )


def test_chain_of_writes_only_is_a_write_card(registry: Registry) -> None:
    result = plan(registry, REFUND_SMALL, ToolCall("tag_order", {"order_id": 1}, "t-t"))
    assert result.card is not None
    assert result.card.kind == "write"


def test_card_hash_is_over_validated_args(registry: Registry) -> None:
    result = plan(registry, REFUND_BIG)
    assert result.card is not None
    args = result.card.calls[0].args
    assert args == {"order_id": 1002, "amount": 250.0, "note": ""}
    assert result.card.args_hash == args_hash([{"action": "refund", "args": args}])
    assert result.card.args_hash == expected_hash([{"action": "refund", "args": args}])


def test_team_approver_when_the_condition_holds(registry: Registry) -> None:
    small = plan(registry, REFUND_SMALL).card
    big = plan(registry, REFUND_BIG).card
    assert small is not None and big is not None
    assert (small.approver, small.levels) == ("user", [])
    assert (big.approver, big.levels) == ("team", ["support-lead", "finance"])
    assert big.text == "Refund $250.00 on order 1002?"


def test_any_team_call_makes_the_whole_chain_team_approved(registry: Registry) -> None:
    result = plan(registry, CANCEL, REFUND_BIG)
    assert result.card is not None
    assert result.card.approver == "team"
    assert result.card.levels == ["support-lead", "finance"]
    assert result.card.kind == "destructive"


def test_team_levels_are_merged_in_order_without_duplicates(registry: Registry) -> None:
    grant = ToolCall("grant_access", {"user": "bo"}, "t-g")
    result = plan(registry, REFUND_BIG, grant)
    assert result.card is not None
    assert result.card.levels == ["support-lead", "finance", "security"]
    reversed_ = plan(registry, grant, REFUND_BIG)
    assert reversed_.card is not None
    assert reversed_.card.levels == ["finance", "security", "support-lead"]


def test_unknown_action_is_refused(registry: Registry) -> None:
    result = plan(registry, ToolCall("drop_database", {"really": True}, "t-x"), CANCEL)
    assert [c.tool_call_id for c in result.refused] == ["t-x"]
    assert result.refused[0].action is None
    assert "drop_database" in (result.refused[0].error or "")
    assert result.card is not None
    assert [c.name for c in result.card.calls] == ["cancel_order"]


@pytest.mark.parametrize(
    "args",
    [
        {"order_id": 1001, "customer": "Zoë"},
        {"order_id": 1001, "customer": "Zoë", "total": 1.0, "force": True},
        {"order_id": "one", "customer": "Zoë", "total": 1.0},
    ],
)
def test_invalid_args_are_refused_and_never_in_the_card(
    registry: Registry, args: dict[str, Any]
) -> None:
    bad = ToolCall("cancel_order", args, "t-bad")
    result = plan(registry, bad, REFUND_SMALL)
    assert [c.tool_call_id for c in result.refused] == ["t-bad"]
    assert result.refused[0].action is registry.get("cancel_order")
    assert result.refused[0].error
    assert result.card is not None
    assert [c.tool_call_id for c in result.card.calls] == ["t-r"]
    assert result.card.args_hash == expected_hash(result.card.canonical_calls)


def test_condition_that_cannot_be_decided_is_refused(registry: Registry) -> None:
    async def check(ctx: Any, limits: list[int]) -> None: ...

    registry.add(make_action(check, kind="write", when="limits[0] > 5"))
    result = plan(registry, ToolCall("check", {"limits": []}, "t-1"))
    assert [c.tool_call_id for c in result.refused] == ["t-1"]
    assert result.card is None


def test_only_refused_calls_make_no_card(registry: Registry) -> None:
    result = plan(registry, ToolCall("nope", {}, "t1"))
    assert result.card is None
    assert result.run_now == []
    assert len(result.refused) == 1


def test_a_call_the_bot_could_not_read_is_refused_even_with_usable_args(
    registry: Registry,
) -> None:
    """A model's garbled arguments ({} after failed JSON) must neither run nor be carded."""
    garbled = ToolCall("tag_order", {}, "t1", error="tag_order: the arguments are not valid JSON")
    unread = ToolCall("list_orders", {}, "t2", error="list_orders: the arguments are not valid")
    result = plan(registry, garbled, unread)
    assert [(c.tool_call_id, c.error) for c in result.refused] == [
        ("t1", "tag_order: the arguments are not valid JSON"),
        ("t2", "list_orders: the arguments are not valid"),
    ]
    assert result.refused[0].action is registry.get("tag_order")
    assert (result.run_now, result.card) == ([], None)


def test_already_declined_calls_get_no_new_card_flag(registry: Registry) -> None:
    first = plan(registry, CANCEL, REFUND_SMALL)
    assert first.card is not None
    again = plan(registry, CANCEL, REFUND_SMALL, declined={first.card.args_hash})
    assert again.already_declined
    assert not again.stop_turn
    other = plan(registry, REFUND_SMALL, CANCEL, declined={first.card.args_hash})
    assert not other.already_declined  # a different card: a new proposal


def test_same_calls_with_other_args_are_not_already_declined(registry: Registry) -> None:
    first = plan(registry, REFUND_SMALL)
    assert first.card is not None
    changed = ToolCall("refund", {"order_id": 1002, "amount": 21}, "t-r2")
    assert not plan(registry, changed, declined={first.card.args_hash}).already_declined


def test_reads_still_run_when_the_gated_part_was_declined(registry: Registry) -> None:
    first = plan(registry, CANCEL)
    assert first.card is not None
    again = plan(
        registry, ToolCall("list_orders", {}, "t-l"), CANCEL, declined={first.card.args_hash}
    )
    assert again.already_declined
    assert [c.tool_call_id for c in again.run_now] == ["t-l"]


def test_turn_stops_after_bounded_repeats(registry: Registry) -> None:
    card = plan(registry, CANCEL).card
    assert card is not None
    declined = {card.args_hash}
    assert MAX_REPEATED_PROPOSALS >= 1
    for repeats in range(MAX_REPEATED_PROPOSALS - 1):
        result = plan_step(registry, [CANCEL], declined, repeats)
        assert result.already_declined and not result.stop_turn
    for repeats in (MAX_REPEATED_PROPOSALS - 1, MAX_REPEATED_PROPOSALS + 3):
        result = plan_step(registry, [CANCEL], declined, repeats)
        assert result.already_declined and result.stop_turn


def test_repeats_alone_do_not_stop_a_new_proposal(registry: Registry) -> None:
    result = plan_step(registry, [CANCEL], {"sha256:" + "0" * 64}, MAX_REPEATED_PROPOSALS + 1)
    assert not result.already_declined
    assert not result.stop_turn


def test_re_proposed_chain_is_bounded_through_the_conversation(registry: Registry) -> None:
    """The engine's loop: plan, answer "already declined", plan again, until the turn stops."""
    second = ToolCall("cancel_order", {"order_id": 1002, "customer": "Bo", "total": 5}, "t-2")
    first = plan(registry, CANCEL, second)
    assert first.card is not None
    conversation = [
        user_message("cancel both"),
        assistant_message("", [CANCEL, second]),
        tool_message("t-c", {"status": "declined", "args_hash": first.card.args_hash}),
        tool_message("t-2", {"status": "declined", "args_hash": first.card.args_hash}),
    ]
    stops = []
    for attempt in range(MAX_REPEATED_PROPOSALS):
        calls = [
            ToolCall(CANCEL.name, CANCEL.args, f"a{attempt}"),
            ToolCall(second.name, second.args, f"b{attempt}"),
        ]
        declined, repeats = declined_in_turn(conversation)
        result = plan_step(registry, calls, declined, repeats)
        assert result.already_declined
        stops.append(result.stop_turn)
        conversation.append(assistant_message("", calls))
        for c in calls:
            conversation.append(
                tool_message(
                    c.id, {"status": "already_declined", "args_hash": first.card.args_hash}
                )
            )
    assert stops == [False] * (MAX_REPEATED_PROPOSALS - 1) + [True]


def test_a_call_whose_message_cannot_be_rendered_is_refused_not_crashing() -> None:
    async def ship(ctx: Any, order_id: int, total: float | None = None) -> None: ...

    reg = Registry()
    reg.add(make_action(ship, kind="write", message="Ship it for {{ total|money }}?"))
    result = plan(reg, ToolCall("ship", {"order_id": 1}, "t1"))
    assert result.card is None
    assert [r.tool_call_id for r in result.refused] == ["t1"]
    assert "cannot show this call" in (result.refused[0].error or "")


def test_nan_inside_an_untyped_argument_is_refused() -> None:
    async def store_blob(ctx: Any, blob: Any) -> None: ...

    reg = Registry()
    reg.add(make_action(store_blob, kind="write"))
    result = plan(reg, ToolCall("store_blob", {"blob": {"x": float("nan")}}, "t1"))
    assert result.card is None
    assert "not plain JSON" in (result.refused[0].error or "")


# Conditions over the whole card and the session ----------------------------------------


def split_refund_registry() -> Registry:
    registry = Registry()
    registry.add(
        make_action(
            refund,
            kind="write",
            approver=team("support-lead", when="session_sum('amount') + card_sum('amount') > 100"),
        )
    )
    return registry


def refunds(*amounts: float) -> list[ToolCall]:
    return [
        ToolCall("refund", {"order_id": 1000 + n, "amount": a}, f"c{n}")
        for n, a in enumerate(amounts)
    ]


def test_a_limit_cannot_be_dodged_by_splitting_one_call_into_many() -> None:
    registry = split_refund_registry()
    alone = plan_step(registry, refunds(100), set(), 0)
    assert alone.card is not None and alone.card.approver == "user"
    split = plan_step(registry, refunds(100, 100, 100, 100, 100), set(), 0)
    assert split.card is not None and split.card.approver == "team"
    assert len(split.card.calls) == 5


def test_session_sum_counts_the_calls_that_ran_before() -> None:
    registry = split_refund_registry()
    asked: list[set[str]] = []

    def ran(names: set[str]) -> dict[str, list[dict[str, Any]]]:
        asked.append(set(names))
        return {"refund": [{"order_id": 1, "amount": 60.0}]}

    assert plan_step(registry, refunds(30), set(), 0, ran).card.approver == "user"  # type: ignore[union-attr]
    assert plan_step(registry, refunds(50), set(), 0, ran).card.approver == "team"  # type: ignore[union-attr]
    assert asked == [{"refund"}, {"refund"}]


def test_calls_that_ran_are_not_looked_for_when_no_condition_sums_them(
    registry: Registry,
) -> None:
    def ran(names: set[str]) -> dict[str, list[dict[str, Any]]]:
        raise AssertionError(f"asked for {names}")

    assert plan_step(registry, [CANCEL], set(), 0, ran).card is not None


def test_card_calls_counts_the_calls_of_the_action_on_the_card() -> None:
    registry = Registry()
    registry.add(make_action(tag_order, kind="write", when="card_calls > 2"))
    few = plan_step(registry, [ToolCall("tag_order", {"order_id": 1}, "a")], set(), 0)
    assert few.card is None and len(few.run_now) == 1
    many = [ToolCall("tag_order", {"order_id": n}, f"t{n}") for n in range(3)]
    assert plan_step(registry, many, set(), 0).card is not None


@pytest.mark.parametrize(
    "when",
    [
        "card_sum(amount) > 1",
        "card_sum('nope') > 1",
        "session_sum() > 1",
        "card_sum('amount', 'x')",
    ],
)
def test_summing_functions_take_one_parameter_name_in_quotes(when: str) -> None:
    with pytest.raises(ActionError):
        make_action(refund, kind="write", when=when)


def test_a_step_over_the_call_limit_is_refused_whole() -> None:
    registry = split_refund_registry()
    step = plan_step(registry, refunds(*[1.0] * (MAX_CALLS_PER_STEP + 1)), set(), 0)
    assert step.card is None and not step.run_now
    assert len(step.refused) == MAX_CALLS_PER_STEP + 1
    assert all(f"at most {MAX_CALLS_PER_STEP} calls" in (c.error or "") for c in step.refused)
    at_limit = plan_step(registry, refunds(*[1.0] * MAX_CALLS_PER_STEP), set(), 0)
    assert at_limit.card is not None and len(at_limit.card.calls) == MAX_CALLS_PER_STEP
