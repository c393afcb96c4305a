"""Card message templates: Jinja2 in a sandbox, rendered to plain text.

The text is plain: every HTML surface (widget, dashboard) inserts it as text or
through an autoescaping environment, so markup in an argument stays inert. Every value a
template prints is shown as core.display shows it (hidden characters made visible,
right-to-left text isolated), so the card's text cannot hide, reorder or add to what
runs; the template's own text, line breaks included, is kept as written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from signoff.core.display import shown


class TemplateError(ValueError):
    pass


def money(value: Any, currency: str = "$") -> str:
    amount = Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    sign = "-" if amount < 0 else ""
    return f"{sign}{currency}{abs(amount):,.2f}"


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    word = singular if count == 1 else (plural_form or singular + "s")
    return f"{count} {word}"


def _printed(value: Any) -> str:
    """What ``{{ ... }}`` prints for a value, after its filters."""
    return shown(str(value))


_env = ImmutableSandboxedEnvironment(autoescape=False, undefined=StrictUndefined, finalize=_printed)
_env.filters["money"] = money
_env.filters["plural"] = plural


class MessageTemplate:
    """A compiled message; checked at registration against the action's parameters."""

    def __init__(self, source: str, params: Iterable[str]) -> None:
        try:
            ast = _env.parse(source)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"message template: {exc.message} (line {exc.lineno})") from exc
        unknown = meta.find_undeclared_variables(ast) - set(params)
        if unknown:
            raise TemplateError(f"message template names unknown parameters: {sorted(unknown)}")
        self.source = source
        self._template = _env.from_string(source)

    def render(self, args: Mapping[str, Any]) -> str:
        return self._template.render(**args).strip()


def humanise(name: str) -> str:
    """``cancel_order`` → ``Cancel order``."""
    words = name.replace("-", "_").split("_")
    return " ".join(w for w in words if w).capitalize()


def generated_message(title: str, description: str, key_params: Iterable[str]) -> str:
    """The template used when an action has none: its title, key params and description."""
    shown = ", ".join(f"{p} {{{{ {p} }}}}" for p in key_params)
    text = f"{_literal(title)}: {shown}?" if shown else f"{_literal(title)}?"
    if description:
        text += f"\n{_literal(description)}"
    return text


def _literal(text: str) -> str:
    """Template source that renders ``text`` as is: every Jinja2 delimiter starts with "{"."""
    return text.replace("{", "{{ '{' }}")
