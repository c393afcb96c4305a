"""Actions: what a bot may call, how each call is gated, validated and shown."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from simpleeval import EvalWithCompoundTypes, InvalidExpression

from signoff.core.bot import BotContext
from signoff.core.canonical import canonical_bytes
from signoff.core.fields import FieldDisplay
from signoff.core.redact import is_sensitive_name
from signoff.core.teammates import RESERVED_ROLES, check_role_name
from signoff.core.templates import MessageTemplate, generated_message, humanise

ActionFunc = Callable[..., Awaitable[Any]]

DEFAULT_TIMEOUT = 600.0  # how long a card stays open
DEFAULT_RUN_TIMEOUT = 30.0  # how long one call may run before it counts as failed
MAX_KEY_PARAMS = 3
MAX_LABEL = 40  # a button's text


class Kind(StrEnum):
    READ = "read"
    WRITE = "write"
    DESTRUCTIVE = "destructive"


class ActionError(ValueError):
    """An action was declared wrongly; raised at registration, never at run time."""


class ArgsError(ValueError):
    """A call's arguments do not fit the action's signature."""


@dataclass(frozen=True)
class Neighbours:
    """What a ``when`` condition sees beyond its own call: the args of every call of the
    same action in the same card (this one included), and of those that already ran in the
    session's conversation. So a limit cannot be dodged by splitting one call into many."""

    card: tuple[Mapping[str, Any], ...] = ()
    ran: tuple[Mapping[str, Any], ...] = ()
    context: BotContext | None = None  # whose conversation: for a callable ``when``


def _total(calls: Iterable[Mapping[str, Any]], name: str) -> float:
    values = (call.get(name) for call in calls)
    return float(sum(v for v in values if isinstance(v, int | float) and not isinstance(v, bool)))


# The functions a condition may call, each over one argument named by a string literal.
CONDITION_FUNCTIONS = ("card_sum", "session_sum")


class Condition:
    """A ``when`` expression over the call's args, run by a safe evaluator (never ``eval``).

    Besides the args it may use ``card_sum("amount")`` (the total of an argument over the
    card's calls of this action) and ``session_sum("amount")`` (over this action's calls
    that ran earlier in the conversation), and ``card_calls`` (how many calls of this
    action the card holds).
    """

    def __init__(self, source: str, params: Iterable[str]) -> None:
        if not isinstance(source, str):  # a number, say: refused, not run
            raise ActionError(
                f"when= takes an expression in a string, like 'amount > 100', or a "
                f"function of the args and the context, not a {type(source).__name__}"
            )
        self.source = source
        params = set(params)
        try:
            self._parsed = EvalWithCompoundTypes().parse(source)
        except (SyntaxError, InvalidExpression) as exc:
            raise ActionError(f"when={source!r}: {exc}") from exc
        # Whether it adds up calls that ran before: only then must they be found.
        self.sums_session = False
        for node in ast.walk(self._parsed):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in CONDITION_FUNCTIONS
            ):
                _check_summed(source, node, params)
                self.sums_session |= node.func.id == "session_sum"
        names = {node.id for node in ast.walk(self._parsed) if isinstance(node, ast.Name)}
        allowed = params | {"True", "False", "None", "card_calls"} | set(CONDITION_FUNCTIONS)
        unknown = names - allowed
        if unknown:
            raise ActionError(f"when={source!r} names unknown parameters {sorted(unknown)}")

    def __call__(self, args: Mapping[str, Any], neighbours: Neighbours | None = None) -> bool:
        around = neighbours or Neighbours(card=(args,))
        evaluator = EvalWithCompoundTypes(
            names={**args, "card_calls": len(around.card)},
            functions={
                "card_sum": lambda name: _total(around.card, name),
                "session_sum": lambda name: _total(around.ran, name),
            },
        )
        try:
            return bool(evaluator.eval(self.source, previously_parsed=self._parsed))
        except (InvalidExpression, TypeError, ValueError, LookupError, ArithmeticError) as exc:
            # A condition that cannot be decided refuses the call: the safe side.
            raise ArgsError(f"condition {self.source!r} failed: {exc}") from exc


# A ``when`` in code: the call's args and whose conversation it is (None for a call no
# conversation made), to True for a card.
WhenFunction = Callable[[Mapping[str, Any], BotContext | None], bool]


class FunctionCondition:
    """A ``when`` given as a function, for rules an expression cannot hold (a user's tier,
    a site's own rules)."""

    sums_session = False

    def __init__(self, func: WhenFunction, name: str) -> None:
        if inspect.iscoroutinefunction(func):
            raise ActionError(f"action {name}: when= must be a plain function, not async")
        try:
            inspect.signature(func).bind(None, None)
        except (TypeError, ValueError):
            raise ActionError(
                f"action {name}: a when= function takes two arguments, the call's args and "
                "the context (whose conversation it is)"
            ) from None
        self.func = func
        self.source = getattr(func, "__name__", "when")

    def __call__(self, args: Mapping[str, Any], neighbours: Neighbours | None = None) -> bool:
        try:
            return bool(self.func(dict(args), neighbours.context if neighbours else None))
        except Exception as exc:
            # A condition that cannot be decided refuses the call: the safe side.
            raise ArgsError(f"condition {self.source} failed: {type(exc).__name__}") from exc


def condition(
    when: str | WhenFunction | None, params: Iterable[str], name: str
) -> Condition | FunctionCondition | None:
    """A ``when`` as an expression's or a function's condition; None for none."""
    if when is None:
        return None
    if callable(when):
        return FunctionCondition(when, name)
    return Condition(when, params)


def _check_summed(source: str, call: ast.Call, params: set[str]) -> None:
    """``card_sum`` and ``session_sum`` take one parameter's name, as a string literal."""
    name = call.func.id if isinstance(call.func, ast.Name) else ""
    arg = call.args[0] if len(call.args) == 1 and not call.keywords else None
    if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value in params):
        raise ActionError(f"when={source!r}: {name}() takes one parameter name, in quotes")


@dataclass(frozen=True)
class Team:
    """Teammates approve, level by level: ``team("support-lead", "finance")``.

    With ``when``, the team approves only when the condition holds and the
    session user approves otherwise.
    """

    levels: tuple[str, ...]
    when: str | WhenFunction | None = None


def team(*roles: str, when: str | WhenFunction | None = None) -> Team:
    if not roles or not all(isinstance(r, str) and r for r in roles):
        raise ActionError("team() needs at least one role name")
    for role in roles:
        if role in RESERVED_ROLES:
            raise ActionError(f"team(): {role!r} is signoff's own role; name a team role")
        try:
            check_role_name(role)
        except ValueError as exc:
            raise ActionError(f"team(): {exc}") from None
    return Team(levels=tuple(roles), when=when)


@dataclass(frozen=True)
class Gate:
    """How one call must be approved: not at all, by the session user, or by teammates."""

    approver: str  # "auto" | "user" | "team"
    levels: tuple[str, ...] = ()

    @property
    def gated(self) -> bool:
        return self.approver != "auto"


AUTO = Gate("auto")
USER = Gate("user")


@dataclass
class Action:
    name: str
    func: ActionFunc
    kind: Kind
    title: str
    description: str
    message: MessageTemplate
    args_model: type[BaseModel]
    display: FieldDisplay
    confirm: bool = True
    when: Condition | FunctionCondition | None = None
    team: Team | None = None
    team_when: Condition | FunctionCondition | None = None
    timeout: float = DEFAULT_TIMEOUT
    run_timeout: float = DEFAULT_RUN_TIMEOUT
    sensitive: frozenset[str] = field(default_factory=frozenset)
    freeform: frozenset[str] = field(default_factory=frozenset)
    confirm_label: str | None = None  # the card's buttons; None: the widget's default
    cancel_label: str | None = None

    @property
    def params(self) -> list[str]:
        return list(self.args_model.model_fields)

    @property
    def sums_session(self) -> bool:
        """Whether a condition of this action adds up its calls that ran before."""
        return any(c is not None and c.sums_session for c in (self.when, self.team_when))

    def validate(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Check args against the signature; returns them in their JSON form, ready to hash."""
        try:
            model = self.args_model.model_validate(dict(args))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'args'}: {err['msg']}"
                for err in exc.errors(include_url=False)
            )
            raise ArgsError(f"{self.name}: {problems}") from None
        values = model.model_dump(mode="json")
        try:
            canonical_bytes([{"action": self.name, "args": values}])
        except ValueError as exc:  # NaN or infinity inside an untyped argument
            raise ArgsError(f"{self.name}: arguments are not plain JSON ({exc})") from None
        if self.args_model.model_validate(values) != model:
            # A validator that transforms, or a secret type that dumps masked: what is held
            # and shown would not be what runs.
            raise ArgsError(f"{self.name}: arguments change when validated again")
        return values

    def bind(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Turn validated JSON args back into the Python values the function expects."""
        model = self.args_model.model_validate(dict(args))
        return {name: getattr(model, name) for name in self.args_model.model_fields}

    def gate(self, args: Mapping[str, Any], neighbours: Neighbours | None = None) -> Gate:
        """How this call must be approved; ``neighbours`` are the card's other calls of
        this action and those that ran before (see ``Neighbours``)."""
        if self.kind is Kind.READ or not self.confirm:
            return AUTO
        if self.when is not None and not self.when(args, neighbours):
            return AUTO
        if self.team is not None and (self.team_when is None or self.team_when(args, neighbours)):
            return Gate("team", self.team.levels)
        return USER

    def effect(self, args: Mapping[str, Any]) -> str:
        """The card's line for this call; ArgsError when the args cannot be shown."""
        try:
            return self.message.render(args)
        except Exception as exc:  # the template met values it cannot show: refuse the call
            raise ArgsError(f"{self.name}: cannot show this call: {exc}") from None


def _args_model(name: str, func: ActionFunc) -> type[BaseModel]:
    try:
        # eval_str: hints written as strings (``from __future__ import annotations``)
        # are resolved in the action's own module.
        params = list(inspect.signature(func, eval_str=True).parameters.values())
    except (NameError, SyntaxError) as exc:
        raise ActionError(f"action {name}: cannot resolve its type hints: {exc}") from None
    if not params or params[0].name != "ctx":
        raise ActionError(f"action {name}: the first parameter must be ctx")
    fields: dict[str, Any] = {}
    for p in params[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            raise ActionError(f"action {name}: parameters must be named (no *args, **kwargs, /)")
        annotation = Any if p.annotation is inspect.Parameter.empty else p.annotation
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (annotation, default)
    # NaN kept as NaN on dump, so the JSON check refuses it instead of showing null.
    config = ConfigDict(extra="forbid", allow_inf_nan=False, ser_json_inf_nan="constants")
    return create_model(f"{name}_args", __config__=config, **fields)


def make_action(
    func: ActionFunc,
    *,
    kind: str | Kind,
    name: str | None = None,
    title: str | None = None,
    description: str | None = None,
    message: str | None = None,
    when: str | WhenFunction | None = None,
    approver: Team | str = "user",
    timeout: float = DEFAULT_TIMEOUT,
    run_timeout: float = DEFAULT_RUN_TIMEOUT,
    confirm: bool = True,
    sensitive: Iterable[str] = (),
    freeform: Iterable[str] = (),
    labels: Mapping[str, str] | None = None,
    formats: Mapping[str, str] | None = None,
    result_message: str | None = None,
    confirm_label: str | None = None,
    cancel_label: str | None = None,
) -> Action:
    name = name or func.__name__
    if not inspect.iscoroutinefunction(func):
        raise ActionError(f"action {name}: must be an async function")
    try:
        kind = Kind(kind)
    except ValueError:
        raise ActionError(f"action {name}: kind must be read, write or destructive") from None
    if timeout <= 0 or run_timeout <= 0:
        raise ActionError(f"action {name}: timeout and run_timeout must be positive")
    if approver != "user" and not isinstance(approver, Team):
        raise ActionError(f'action {name}: approver must be "user" or team(...)')
    model = _args_model(name, func)
    params = list(model.model_fields)
    sensitive, freeform = frozenset(sensitive), frozenset(freeform)
    for label, names in (("sensitive", sensitive), ("freeform", freeform)):
        unknown = set(names) - set(params)
        if unknown:
            raise ActionError(f"action {name}: {label} names unknown parameters {sorted(unknown)}")
    title = title or humanise(name)
    description = description or inspect.getdoc(func) or ""
    # Key params shown by a generated message; secrets never are.
    required = [
        n
        for n, f in model.model_fields.items()
        if f.is_required() and not is_sensitive_name(n, sensitive) and n not in freeform
    ]
    source = message or generated_message(
        title, description.split("\n", 1)[0], required[:MAX_KEY_PARAMS]
    )
    team_ = approver if isinstance(approver, Team) else None
    for option, button in (("confirm_label", confirm_label), ("cancel_label", cancel_label)):
        if button is not None and not (isinstance(button, str) and 0 < len(button) <= MAX_LABEL):
            raise ActionError(f"action {name}: {option} must be text of 1-{MAX_LABEL} characters")
    try:
        template = MessageTemplate(source, params)
        display = FieldDisplay(
            model,
            labels=labels,
            formats=formats,
            sensitive=sensitive,
            result_message=result_message,
        )
    except ValueError as exc:
        raise ActionError(f"action {name}: {exc}") from None
    return Action(
        name=name,
        func=func,
        kind=kind,
        title=title,
        description=description,
        message=template,
        args_model=model,
        display=display,
        confirm=confirm,
        when=condition(when, params, name),
        team=team_,
        team_when=condition(team_.when, params, name) if team_ else None,
        timeout=float(timeout),
        run_timeout=float(run_timeout),
        sensitive=sensitive,
        freeform=freeform,
        confirm_label=confirm_label,
        cancel_label=cancel_label,
    )


class Registry:
    """The actions a site's bot may call, by name."""

    def __init__(self) -> None:
        self._actions: dict[str, Action] = {}

    def add(self, action: Action) -> Action:
        if action.name in self._actions:
            raise ActionError(f"action {action.name} is registered twice")
        self._actions[action.name] = action
        return action

    def get(self, name: str) -> Action | None:
        return self._actions.get(name)

    def __iter__(self) -> Iterator[Action]:
        return iter(self._actions.values())

    def __len__(self) -> int:
        return len(self._actions)
