"""Actions: declaration checks, args validation from type hints, and gating."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

import pytest
from pydantic import AfterValidator, SecretStr

from signoff.core.actions import (
    AUTO,
    USER,
    Action,
    ActionError,
    ArgsError,
    Condition,
    Gate,
    Kind,
    Neighbours,
    Registry,
    Team,
    make_action,
    team,
)
from signoff.core.bot import BotContext


async def cancel_order(ctx: Any, order_id: int, customer: str, total: float) -> dict[str, Any]:
    """Cancel an order and refund it.

    Second paragraph, not shown.
    """
    return {}


async def refund(ctx: Any, order_id: int, amount: float, note: str = "") -> dict[str, Any]:
    return {}


async def list_orders(ctx: Any, limit: int = 10) -> list[dict[str, Any]]:
    return []


async def tag(ctx: Any, tags: list[str], data: dict[str, int]) -> None:
    return None


def refund_action(**options: Any) -> Action:
    return make_action(refund, kind=options.pop("kind", "write"), **options)


# Declaration ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["read", "write", "destructive", Kind.DESTRUCTIVE])
def test_known_kinds_are_accepted(kind: str) -> None:
    assert make_action(refund, kind=kind).kind is Kind(kind)


@pytest.mark.parametrize("kind", ["delete", "READ", "", "writes"])
def test_unknown_kind_is_rejected(kind: str) -> None:
    with pytest.raises(ActionError, match="kind"):
        make_action(refund, kind=kind)


def test_first_parameter_must_be_ctx() -> None:
    async def no_ctx(order_id: int) -> None: ...

    async def no_params() -> None: ...

    async def context_named_otherwise(context: Any, order_id: int) -> None: ...

    for func in (no_ctx, no_params, context_named_otherwise):
        with pytest.raises(ActionError, match="ctx"):
            make_action(func, kind="write")


def test_sync_function_is_rejected() -> None:
    def sync(ctx: Any, order_id: int) -> None: ...

    with pytest.raises(ActionError, match="async"):
        make_action(sync, kind="write")


def test_var_args_are_rejected() -> None:
    async def star(ctx: Any, *args: Any) -> None: ...

    async def kw(ctx: Any, **kwargs: Any) -> None: ...

    for func in (star, kw):
        with pytest.raises(ActionError):
            make_action(func, kind="write")


@pytest.mark.parametrize("option", [{"timeout": 0}, {"timeout": -1}, {"run_timeout": 0}])
def test_non_positive_timeouts_are_rejected(option: dict[str, float]) -> None:
    with pytest.raises(ActionError, match="timeout"):
        refund_action(**option)


def test_approver_must_be_user_or_team() -> None:
    with pytest.raises(ActionError, match="approver"):
        refund_action(approver="support-lead")


def test_team_needs_a_role() -> None:
    with pytest.raises(ActionError):
        team()
    with pytest.raises(ActionError):
        team("")


@pytest.mark.parametrize("role", ["admin", "host", "Finance", "support lead", "x" * 65])
def test_team_roles_are_team_role_names(role: str) -> None:
    with pytest.raises(ActionError, match="team"):
        team(role)


def test_team_keeps_levels_in_order() -> None:
    assert team("manager", "director", when="amount > 1") == Team(
        levels=("manager", "director"), when="amount > 1"
    )


def test_sensitive_and_freeform_must_name_parameters() -> None:
    with pytest.raises(ActionError, match="sensitive"):
        refund_action(sensitive=["card_number"])
    with pytest.raises(ActionError, match="freeform"):
        refund_action(freeform=["comment"])
    action = refund_action(sensitive=["note"], freeform=["note"])
    assert action.sensitive == frozenset({"note"})
    assert action.freeform == frozenset({"note"})


def test_name_title_and_description_defaults() -> None:
    action = make_action(cancel_order, kind="destructive")
    assert action.name == "cancel_order"
    assert action.title == "Cancel order"
    assert action.description.startswith("Cancel an order and refund it.")
    assert action.params == ["order_id", "customer", "total"]
    named = make_action(cancel_order, kind="destructive", name="void", title="Void it")
    assert (named.name, named.title) == ("void", "Void it")


def test_template_naming_unknown_params_is_rejected_at_registration() -> None:
    with pytest.raises(ActionError, match="customer"):
        refund_action(message="Refund {{ amount }} to {{ customer }}?")


def test_template_syntax_error_is_rejected_at_registration() -> None:
    with pytest.raises(ActionError):
        refund_action(message="Refund {{ amount ")


def test_explicit_message_is_rendered_with_args() -> None:
    action = make_action(
        cancel_order,
        kind="destructive",
        message="Cancel order #{{ order_id }} for {{ customer }}, total {{ total|money }}?",
    )
    args = action.validate({"order_id": 1001, "customer": "Ada", "total": 89.5})
    assert action.effect(args) == "Cancel order #1001 for Ada, total $89.50?"


def test_generated_message_names_action_and_key_params() -> None:
    action = make_action(cancel_order, kind="destructive")
    text = action.effect({"order_id": 1001, "customer": "Ada", "total": 89.5})
    assert "Cancel order" in text
    assert "order_id 1001" in text
    assert "customer Ada" in text
    assert "total 89.5" in text
    assert "Cancel an order and refund it." in text
    assert "Second paragraph" not in text


def test_generated_message_leaves_out_optional_params() -> None:
    text = refund_action().effect({"order_id": 7, "amount": 20.0, "note": "secret words"})
    assert "order_id 7" in text
    assert "amount 20.0" in text
    assert "secret words" not in text


def test_generated_message_shows_a_docstring_with_braces_literally() -> None:
    async def clean(ctx: Any, path: str) -> None:
        """Removes {{ tmp }} and {% raw %} markers from the path."""

    action = make_action(clean, kind="destructive")
    text = action.effect({"path": "/srv"})
    assert "path /srv" in text
    assert "Removes {{ tmp }} and {% raw %} markers from the path." in text


# Args validation -----------------------------------------------------------------------


def test_valid_args_are_returned_in_json_form() -> None:
    action = make_action(cancel_order, kind="destructive")
    assert action.validate({"order_id": 1001, "customer": "Ada", "total": 89.5}) == {
        "order_id": 1001,
        "customer": "Ada",
        "total": 89.5,
    }


def test_numeric_string_is_coerced_for_int() -> None:
    action = make_action(cancel_order, kind="destructive")
    args = action.validate({"order_id": "1001", "customer": "Ada", "total": "89.50"})
    assert args["order_id"] == 1001
    assert isinstance(args["order_id"], int)
    assert args["total"] == 89.5


def test_defaults_are_applied() -> None:
    assert refund_action().validate({"order_id": 1, "amount": 2}) == {
        "order_id": 1,
        "amount": 2.0,
        "note": "",
    }
    assert make_action(list_orders, kind="read").validate({}) == {"limit": 10}


def test_missing_arg_is_refused_naming_the_field() -> None:
    with pytest.raises(ArgsError, match="customer"):
        make_action(cancel_order, kind="destructive").validate({"order_id": 1, "total": 1.0})


def test_extra_arg_is_refused_naming_the_field() -> None:
    with pytest.raises(ArgsError, match="confirm_now"):
        refund_action().validate({"order_id": 1, "amount": 2.0, "confirm_now": True})


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"order_id": "one", "amount": 1.0}, "order_id"),
        ({"order_id": 1.5, "amount": 1.0}, "order_id"),
        ({"order_id": 1, "amount": "lots"}, "amount"),
        ({"order_id": 1, "amount": 1.0, "note": ["x"]}, "note"),
        ({"order_id": 1, "amount": float("nan")}, "amount"),
        ({"order_id": 1, "amount": float("inf")}, "amount"),
    ],
)
def test_wrong_type_is_refused_naming_the_field(args: dict[str, Any], field: str) -> None:
    with pytest.raises(ArgsError, match=field):
        refund_action().validate(args)


def test_nested_types_are_validated() -> None:
    action = make_action(tag, kind="write")
    assert action.validate({"tags": ["a"], "data": {"k": "2"}}) == {
        "tags": ["a"],
        "data": {"k": 2},
    }
    with pytest.raises(ArgsError, match="data"):
        action.validate({"tags": ["a"], "data": {"k": "two"}})


def test_bind_returns_python_values() -> None:
    action = refund_action()
    assert action.bind({"order_id": "5", "amount": 1}) == {
        "order_id": 5,
        "amount": 1.0,
        "note": "",
    }


# Gates ----------------------------------------------------------------------------------


ARGS = {"order_id": 1, "amount": 250.0, "note": ""}
SMALL = {"order_id": 1, "amount": 20.0, "note": ""}


def test_read_runs_at_once_even_with_confirm_and_team() -> None:
    action = refund_action(kind="read", approver=team("finance"), when="amount > 0")
    assert action.gate(ARGS) == AUTO
    assert not action.gate(ARGS).gated


@pytest.mark.parametrize("kind", ["write", "destructive"])
def test_write_and_destructive_are_gated_by_default(kind: str) -> None:
    gate = refund_action(kind=kind).gate(ARGS)
    assert gate == USER
    assert gate.gated


def test_confirm_false_is_auto() -> None:
    assert refund_action(confirm=False).gate(ARGS) == AUTO
    assert refund_action(confirm=False, approver=team("finance")).gate(ARGS) == AUTO


def test_when_false_is_auto_and_true_is_user() -> None:
    action = refund_action(when="amount > 100")
    assert action.gate(SMALL) == AUTO
    assert action.gate(ARGS) == USER


def test_team_approver() -> None:
    action = refund_action(approver=team("support-lead", "finance"))
    assert action.gate(SMALL) == Gate("team", ("support-lead", "finance"))


def test_team_with_when_is_team_or_user() -> None:
    action = refund_action(approver=team("support-lead", "finance", when="amount > 100"))
    assert action.gate(ARGS) == Gate("team", ("support-lead", "finance"))
    assert action.gate(SMALL) == USER


def test_action_when_false_wins_over_team() -> None:
    action = refund_action(approver=team("finance"), when="amount > 1000")
    assert action.gate(ARGS) == AUTO


# Conditions -------------------------------------------------------------------------------


def test_condition_evaluates_over_args() -> None:
    condition = Condition("amount > 100 and note == ''", ["amount", "note"])
    assert condition({"amount": 101, "note": ""}) is True
    assert condition({"amount": 100, "note": ""}) is False
    assert condition({"amount": 101, "note": "x"}) is False


def test_when_naming_unknown_params_is_rejected() -> None:
    with pytest.raises(ActionError, match="total"):
        refund_action(when="total > 100")
    with pytest.raises(ActionError, match="total"):
        refund_action(approver=team("finance", when="total > 100"))


def test_a_when_function_sees_the_args_and_whose_conversation_it_is() -> None:
    vip = BotContext("s1", "vip-ann", "shop", "conv1")
    anyone = BotContext("s2", "anon_x", "shop", "conv2")

    def big_unless_vip(args: Mapping[str, Any], context: BotContext | None) -> bool:
        return args["amount"] > 100 and not (context and context.user_id.startswith("vip-"))

    action = refund_action(approver=team("finance", when=big_unless_vip))
    assert action.gate(ARGS, Neighbours(card=(ARGS,), context=anyone)) == Gate("team", ("finance",))
    assert action.gate(ARGS, Neighbours(card=(ARGS,), context=vip)) == USER
    assert action.gate(SMALL, Neighbours(card=(SMALL,), context=anyone)) == USER
    by_site = refund_action(when=lambda args, context: context is None or context.site != "shop")
    assert by_site.gate(ARGS, Neighbours(card=(ARGS,), context=vip)) == AUTO
    assert by_site.gate(ARGS) == USER  # no conversation: the card stands


def test_a_when_function_that_fails_refuses_the_call() -> None:
    action = refund_action(when=lambda args, context: args["missing"])
    with pytest.raises(ArgsError, match="condition <lambda> failed: KeyError"):
        action.gate(ARGS)


def test_a_when_that_is_neither_is_refused_at_registration_saying_what_it_takes() -> None:
    with pytest.raises(ActionError, match="takes two arguments, the call's args and the context"):
        refund_action(when=lambda args: args["amount"] > 100)
    with pytest.raises(ActionError, match="takes two arguments"):
        refund_action(approver=team("finance", when=lambda: True))

    async def later(args: Mapping[str, Any], context: BotContext | None) -> bool:
        return True

    with pytest.raises(ActionError, match="not async"):
        refund_action(when=later)
    says = "when= takes an expression in a string, like 'amount > 100', or a function"
    with pytest.raises(ActionError, match=re.escape(says)):
        refund_action(when=100)


def test_when_with_invalid_syntax_is_rejected() -> None:
    with pytest.raises(ActionError):
        refund_action(when="amount >")


@pytest.mark.parametrize(
    "source",
    [
        "__import__('os').system('touch /tmp/signoff-pwned')",
        "__import__('os')",
        "open('/etc/passwd').read()",
        "eval('1')",
        "exec('import os')",
        "getattr(amount, '__class__')",
        "[c for c in ().__class__.__base__.__subclasses__()]",
    ],
)
def test_when_cannot_reach_builtins(source: str) -> None:
    with pytest.raises(ActionError):
        refund_action(when=source)


@pytest.mark.parametrize(
    "source",
    [
        "amount.__class__",
        "amount.__class__.__mro__",
        "note.__class__.__base__.__subclasses__()",
        "note.format.__globals__",
        "note.format('{0.__class__}', amount)",
        "(lambda: 1)()",
    ],
)
def test_when_attribute_tricks_never_run(source: str) -> None:
    try:
        action = refund_action(when=source)
    except ActionError:
        return  # refused at registration: fine
    with pytest.raises(ArgsError):
        action.gate(ARGS)


def test_when_that_cannot_be_decided_is_an_args_error() -> None:
    with pytest.raises(ArgsError, match="condition"):
        refund_action(when="amount > note").gate(ARGS)
    with pytest.raises(ArgsError, match="condition"):
        refund_action(when="amount / (amount - amount) > 1").gate(ARGS)


def test_when_with_bad_index_or_key_is_an_args_error() -> None:
    action = make_action(tag, kind="write", when="tags[3] == 'vip'")
    with pytest.raises(ArgsError):
        action.gate({"tags": [], "data": {}})
    action = make_action(tag, kind="write", when="data['limit'] > 1")
    with pytest.raises(ArgsError):
        action.gate({"tags": [], "data": {}})


def test_when_that_overflows_is_an_args_error() -> None:
    with pytest.raises(ArgsError):
        refund_action(when="amount ** 4000 > 1").gate(ARGS)


# Registry ---------------------------------------------------------------------------------


def test_registry_add_get_iter_len() -> None:
    registry = Registry()
    first = registry.add(refund_action())
    second = registry.add(make_action(list_orders, kind="read"))
    assert registry.get("refund") is first
    assert registry.get("list_orders") is second
    assert registry.get("nope") is None
    assert list(registry) == [first, second]
    assert len(registry) == 2


def test_duplicate_registration_is_rejected() -> None:
    registry = Registry()
    registry.add(refund_action())
    with pytest.raises(ActionError, match="refund"):
        registry.add(refund_action(kind="destructive"))
    kept = registry.get("refund")
    assert kept is not None
    assert kept.kind is Kind.WRITE
    assert len(registry) == 1


def test_a_generated_message_never_shows_sensitive_or_freeform_params() -> None:
    async def rotate(ctx: Any, account: str, password: str, reason: str) -> None: ...

    action = make_action(rotate, kind="write", freeform=["reason"])
    effect = action.effect({"account": "ada", "password": "hunter2", "reason": "my words"})
    assert "ada" in effect
    assert "hunter2" not in effect and "my words" not in effect


def test_signoff_action_names_a_misspelt_option() -> None:
    from signoff import Signoff
    from signoff.core.actions import ActionError

    app = Signoff()
    with pytest.raises(ActionError, match=r"action wipe: .*'kindd'"):

        @app.action(kindd="destructive")
        async def wipe(ctx: Any) -> None: ...


def test_args_that_change_when_validated_again_are_refused() -> None:
    async def scale(ctx: Any, cents: Annotated[int, AfterValidator(lambda d: d * 100)]) -> None: ...

    async def login(ctx: Any, password: SecretStr) -> None: ...

    for func, args in ((scale, {"cents": 5}), (login, {"password": "hunter2"})):
        action = make_action(func, kind="write")
        with pytest.raises(ArgsError, match="change when validated again"):
            action.validate(args)


def test_positional_only_params_are_refused_at_registration() -> None:
    async def wipe(ctx: Any, target: str, /) -> None: ...

    with pytest.raises(ActionError, match="parameters must be named"):
        make_action(wipe, kind="write")


def test_string_type_hints_resolve_in_the_actions_module() -> None:
    async def wipe(ctx: Any, target: Annotated[str, "shown"], count: int = 1) -> None: ...

    wipe.__annotations__ = {"target": "Annotated[str, 'shown']", "count": "int"}
    action = make_action(wipe, kind="write")
    assert action.validate({"target": "disk", "count": "2"}) == {"target": "disk", "count": 2}


def test_unresolvable_type_hints_are_refused_at_registration() -> None:
    async def wipe(ctx: Any, target: str) -> None: ...

    wipe.__annotations__ = {"target": "NoSuchType"}
    with pytest.raises(ActionError, match="cannot resolve its type hints"):
        make_action(wipe, kind="write")
