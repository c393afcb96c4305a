"""One bot step, planned: which calls run now, which become a card, which are refused.

Pure: the engine does the running, this decides what to run.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from signoff.core.actions import USER, Action, ArgsError, Gate, Kind, Neighbours, Registry
from signoff.core.bot import BotContext
from signoff.core.canonical import Call, args_hash
from signoff.core.conversation import ToolCall

# How often a bot may re-propose calls that were declined in the same turn before
# the engine ends the turn instead of answering it again.
MAX_REPEATED_PROPOSALS = 2
# Bot steps in one turn before the engine stops it: a bound on a looping bot.
MAX_STEPS = 8
# Calls one bot step may propose, so also the calls one card may hold: a step over it is
# refused whole, and only this many of its calls take audit rows.
MAX_CALLS_PER_STEP = 20


@dataclass(frozen=True)
class PlannedCall:
    tool_call_id: str
    name: str
    args: dict[str, Any]
    action: Action | None = None
    gate: Gate | None = None
    effect: str = ""
    error: str | None = None


@dataclass
class CardPlan:
    """The gated calls of one step: they become one card."""

    calls: list[PlannedCall]
    approver: str
    levels: list[str]
    kind: str
    timeout: float
    args_hash: str
    title: str
    text: str

    @property
    def canonical_calls(self) -> list[Call]:
        return [{"action": c.name, "args": c.args} for c in self.calls]


@dataclass
class StepPlan:
    run_now: list[PlannedCall] = field(default_factory=list)  # read and auto calls, in order
    refused: list[PlannedCall] = field(default_factory=list)  # unknown action, bad args
    card: CardPlan | None = None
    already_declined: bool = False  # the card's calls were declined earlier in this turn
    stop_turn: bool = False  # the bot keeps re-proposing declined calls


# The args of the calls of the named actions that already ran in the conversation.
RanCalls = Callable[[Collection[str]], Mapping[str, list[dict[str, Any]]]]


def plan_step(
    registry: Registry,
    calls: list[ToolCall],
    declined: set[str],
    repeats: int,
    ran: RanCalls | None = None,
    context: BotContext | None = None,
) -> StepPlan:
    """Plan one bot step. ``ran`` finds the calls that already ran, by action: what
    ``session_sum`` in a condition adds up. It reads the whole conversation, so it is asked
    only for the actions whose conditions sum."""
    plan = StepPlan()
    if len(calls) > MAX_CALLS_PER_STEP:
        # One message must not become hundreds of calls, cards rows and audit rows.
        error = f"a step may propose at most {MAX_CALLS_PER_STEP} calls; this one had {len(calls)}"
        plan.refused = [
            PlannedCall(c.id, c.name, c.args, registry.get(c.name), error=error) for c in calls
        ]
        return plan
    valid: list[tuple[ToolCall, Action, dict[str, Any]]] = []
    for call in calls:
        action = registry.get(call.name)
        if call.error:
            plan.refused.append(
                PlannedCall(call.id, call.name, call.args, action, error=call.error)
            )
        elif action is None:
            plan.refused.append(
                PlannedCall(call.id, call.name, call.args, error=f"unknown action {call.name!r}")
            )
        else:
            try:
                valid.append((call, action, action.validate(call.args)))
            except ArgsError as exc:
                plan.refused.append(
                    PlannedCall(call.id, call.name, call.args, action, error=str(exc))
                )
    # Each condition sees every call of its action in this step: a limit cannot be dodged
    # by splitting one call into several.
    by_action: dict[str, list[dict[str, Any]]] = {}
    for _, action, args in valid:
        by_action.setdefault(action.name, []).append(args)
    summing = {action.name for _, action, _ in valid if action.sums_session}
    ran_before = ran(summing) if ran is not None and summing else {}
    gated: list[PlannedCall] = []
    for call, action, args in valid:
        neighbours = Neighbours(
            card=tuple(by_action[action.name]),
            ran=tuple(ran_before.get(action.name, ())),
            context=context,
        )
        try:
            gate = action.gate(args, neighbours)
            if call.needs_card and not gate.gated:
                gate = USER  # the bot's framework asks for a person's OK: the visitor's
            effect = action.effect(args) if gate.gated else ""
        except ArgsError as exc:
            plan.refused.append(PlannedCall(call.id, call.name, call.args, action, error=str(exc)))
            continue
        planned = PlannedCall(call.id, call.name, args, action, gate, effect)
        (gated if gate.gated else plan.run_now).append(planned)
    if gated:
        plan.card = card_plan(gated)
        if plan.card.args_hash in declined:
            plan.already_declined = True
            plan.stop_turn = repeats + 1 >= MAX_REPEATED_PROPOSALS
    return plan


def card_plan(calls: list[PlannedCall]) -> CardPlan:
    """The card of gated calls (each with its ``gate`` and ``effect``)."""
    levels: list[str] = []
    for call in calls:
        assert call.gate is not None
        levels.extend(level for level in call.gate.levels if level not in levels)
    actions = [c.action for c in calls if c.action is not None]
    kind = Kind.DESTRUCTIVE if any(a.kind is Kind.DESTRUCTIVE for a in actions) else Kind.WRITE
    if len(calls) == 1:
        title = actions[0].title
        text = calls[0].effect
    else:
        title = f"Confirm {len(calls)} actions"
        text = "They run in this order; if one fails, the rest do not run."
    return CardPlan(
        calls=calls,
        approver="team" if levels else "user",
        levels=levels,
        kind=str(kind),
        timeout=min(a.timeout for a in actions),
        args_hash=args_hash([{"action": c.name, "args": c.args} for c in calls]),
        title=title,
        text=text,
    )
