"""The audit log as the dashboard reads it: its filter form's values, and rows as cells.

The form is read into the API's ``AuditQuery``, so the dashboard and ``GET /api/v1/audit``
accept the same filters and find the same rows. The form differs only in shape: statuses
are checkboxes (the parameter repeated), times come from ``datetime-local`` inputs, which
carry no offset and are read as UTC, and an exact decider may be typed beside the select.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from pydantic import ValidationError
from starlette.datastructures import QueryParams

from signoff.audit.query import DECIDER_KINDS, AuditFilter, as_utc
from signoff.core.frames import describe_invalid
from signoff.web.api import AUDIT_STATUSES, AuditQuery

SUMMARY_CHARS = 160
FAULTS = frozenset({"failed", "refused", "interrupted", "skipped"})  # statuses of errors
DECIDER_CHOICES = ("auto", *DECIDER_KINDS)  # the decided_by select's options
# The form's fields, in the order links write them; ``before`` is the page cursor.
TEXT_FIELDS = ("since", "until", "conversation", "action", "decided_by", "decider", "site")
FIELDS = frozenset({"status", *TEXT_FIELDS, "before"})


class FilterError(ValueError):
    """The form's values are not a filter; the message says why, for the teammate."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class AuditForm:
    """The filter form as given: what refills it, and the query string that repeats it."""

    statuses: list[str] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)
    before: str | None = None

    @classmethod
    def read(cls, params: QueryParams) -> AuditForm:
        """The form's fields from a query string; unknown ones are refused, as are text
        fields given twice."""
        if unknown := sorted(set(params) - FIELDS):
            raise FilterError(400, f"unexpected fields: {', '.join(unknown)}")
        for name in (*TEXT_FIELDS, "before"):
            if len(params.getlist(name)) > 1:
                raise FilterError(400, f"the field {name} is given more than once")
        values = {name: params[name].strip() for name in TEXT_FIELDS if params.get(name)}
        statuses = list(dict.fromkeys(params.getlist("status")))
        return cls(statuses, {k: v for k, v in values.items() if v}, params.get("before") or None)

    def query(self, before: int | str | None = None) -> str:
        """The query string of this filter (and a page cursor), for links and the URL bar."""
        pairs = [("status", s) for s in self.statuses] + list(self.values.items())
        if before is not None:
            pairs.append(("before", str(before)))
        return urlencode(pairs)

    def audit_query(self) -> AuditQuery:
        """The API's query for these values; times without an offset are read as UTC."""
        given: dict[str, Any] = {
            name: self.values[name]
            for name in ("conversation", "action", "site")
            if name in self.values
        }
        if self.statuses:
            given["status"] = ",".join(self.statuses)
        for name in ("since", "until"):
            if name in self.values:
                given[name] = utc_time(name, self.values[name]).isoformat()
        # An exact decider typed in wins over the sort chosen in the select.
        decided_by = self.values.get("decider") or self.values.get("decided_by")
        if decided_by is not None:
            given["decided_by"] = decided_by
        if self.before is not None:
            given["before"] = self.before
        try:
            return AuditQuery.model_validate(given)
        except ValidationError as exc:
            raise FilterError(400, describe_invalid(exc, whole="filter")) from None

    def audit_filter(self, sites: frozenset[str] | None) -> tuple[AuditFilter, int | None]:
        """The filter for a teammate who covers ``sites`` (None: all), and the cursor."""
        query = self.audit_query()
        if query.site is not None and sites is not None and query.site not in sites:
            raise FilterError(403, f"you do not cover the site {query.site!r}")
        where = query.audit_filter(sites)
        return where, int(query.before) if query.before is not None else None


def utc_time(name: str, value: str) -> datetime:
    """A ``datetime-local`` value (``2024-05-01T14:30``) as that time in UTC."""
    try:
        return as_utc(value)
    except ValueError:
        raise FilterError(400, f"{name}: not a date and time like 2024-05-01T14:30") from None


def short(text: str, limit: int = SUMMARY_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def outcome(row: dict[str, Any]) -> str:
    """What came of the row, in short: its error, else the sentence the visitor was told,
    else the HTTP response and the result."""
    if row["error"]:
        return short(str(row["error"]))
    if row["result_text"]:
        return short(row["result_text"])
    parts = []
    response = row["response"]
    if response:
        parts.append(compact(response))
    if row["result"] is not None:
        parts.append(compact(row["result"]))
    return short(" · ".join(parts))


def milliseconds(duration: float) -> str:
    return f"{duration:.1f} ms" if duration < 10 else f"{duration:.0f} ms"


def audit_cells(row: dict[str, Any]) -> dict[str, Any]:
    """One audit row as the dashboard's table shows it; the template escapes every value."""
    duration = row["duration_ms"]
    return {
        "id": row["id"],
        "ts": row["ts"].isoformat(timespec="seconds"),
        "site": row["site"],
        "action": row["action"],
        "kind": row["kind"],
        "status": row["status"],
        "decided_by": row["decided_by"] or "",
        "level": row["level"],
        "ip": row["ip"] or "",
        "user_agent": row["user_agent"] or "",
        "duration": milliseconds(duration) if duration is not None else "",
        # In words where the row has them (revision 0006 on); the documents in full on hover.
        "params": short(row["params_text"].replace("\n", " · "))
        if row["params_text"]
        else short(compact(row["params"])),
        "params_doc": compact(row["params"]),
        "params_in_words": bool(row["params_text"]),
        "outcome": outcome(row),
        # An error in red; why a card waits or ended (declined, expired) as plain text.
        "outcome_style": (
            ("error" if row["status"] in FAULTS else "reason")
            if row["error"]
            else "words"
            if row["result_text"]
            else "doc"
        ),
        "conversation_id": row["conversation_id"],
        "card_id": row["card_id"] or "",
    }


FORM_CHOICES = {"statuses": AUDIT_STATUSES, "decider_kinds": DECIDER_CHOICES}
