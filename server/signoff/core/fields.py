"""How a call reads to people: each argument under a label, each value in words, and a
call's result as a sentence rather than JSON.

Only what is shown changes: a card's calls, their canonical form and ``args_hash`` stay as
they are. Labels come from the action's ``labels=`` mapping, else pydantic's
``Field(title=...)``, else the parameter's name made readable (``order_id`` → "Order id").
A value is shown by the action's ``formats=`` template for it (``"{{ total | money }}"``),
else by its type: yes/no, lists joined, nested objects as "name: value" pairs, text with
its hidden characters made visible (core.display). Sensitive values stay masked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from signoff.core.display import displayed, shown
from signoff.core.redact import REDACTED, is_digest
from signoff.core.templates import MessageTemplate, TemplateError, humanise

log = logging.getLogger("signoff.actions")

# A shown value longer than this is cut: a card is read, not scrolled.
MAX_SHOWN = 300
RESULT_SUMMARY = 120
# The most an audit row keeps of a call in words (its args, one per line).
MAX_TEXT = 4000


def readable(value: Any) -> str:
    """A JSON value in words."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 250.0 reads as 250, as JavaScript shows it
    if isinstance(value, list | tuple):
        return ", ".join(readable(item) for item in value) or "none"
    if isinstance(value, dict):
        return "; ".join(f"{humanise(str(k))}: {readable(v)}" for k, v in value.items())
    return shown(str(value))


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class FieldDisplay:
    """The labels and formats of one action's parameters, checked at registration."""

    def __init__(
        self,
        model: type[BaseModel],
        *,
        labels: Mapping[str, str] | None = None,
        formats: Mapping[str, str] | None = None,
        sensitive: Iterable[str] = (),
        result_message: str | None = None,
    ) -> None:
        params = list(model.model_fields)
        labels, formats = dict(labels or {}), dict(formats or {})
        for option, names in (("labels", labels), ("formats", formats)):
            unknown = set(names) - set(params)
            if unknown:
                raise TemplateError(f"{option} names unknown parameters {sorted(unknown)}")
        self.sensitive = frozenset(sensitive)
        self.labels = {
            name: labels.get(name) or field.title or humanise(name)
            for name, field in model.model_fields.items()
        }
        self.formats = {name: MessageTemplate(source, params) for name, source in formats.items()}
        self.result_message = (
            MessageTemplate(result_message, [*params, "result"]) if result_message else None
        )

    def fields(self, args: Mapping[str, Any]) -> list[dict[str, str]]:
        """Each argument as ``{"name", "label", "value"}``, in the signature's order;
        sensitive values, at any depth, masked."""
        masked = displayed(dict(args), self.sensitive)
        shown_fields = []
        for name, label in self.labels.items():
            if name not in masked:
                continue
            value = readable(masked[name])
            if masked[name] != REDACTED and name in self.formats:
                try:
                    # Over the masked args: a format naming another parameter (or a
                    # secret inside an object) shows it masked too.
                    value = self.formats[name].render(masked)
                except Exception:  # a value the format cannot show: in words instead
                    log.warning("a format could not be rendered; showing the value in words")
            shown_fields.append({"name": name, "label": label, "value": cut(value, MAX_SHOWN)})
        return shown_fields

    def result(self, args: Mapping[str, Any], result: Any) -> str:
        """The sentence for a call that ran: the action's ``result_message``, else a short
        summary of what it returned (nothing for nothing)."""
        if self.result_message is not None:
            try:
                return cut(self.result_message.render({**args, "result": result}), MAX_SHOWN)
            except Exception:
                log.warning("result_message could not be rendered; showing a summary")
        if result is None or result == {} or result == []:
            return ""
        return cut(readable(result), RESULT_SUMMARY)


def generic_fields(args: Mapping[str, Any]) -> list[dict[str, str]]:
    """Fields of a call whose action is not registered (any more): names made readable."""
    return [
        {"name": name, "label": humanise(name), "value": cut(readable(value), MAX_SHOWN)}
        for name, value in displayed(dict(args)).items()
    ]


def fields_text(fields: Iterable[Mapping[str, str]]) -> str:
    """Fields as one text, a "Label: value" line each: the audit row's ``params_text``."""
    return cut("\n".join(f"{f['label']}: {f['value']}" for f in fields), MAX_TEXT)


def without_digests(value: Any) -> Any:
    """A redacted document with each digest of a person's words (core.redact) told as
    such: the words themselves are never kept, and their hash reads as noise."""
    if is_digest(value):
        return f"(not kept: {value['length']} characters)"
    if isinstance(value, dict):
        return {name: without_digests(inner) for name, inner in value.items()}
    if isinstance(value, list):
        return [without_digests(inner) for inner in value]
    return value
