"""Teammates: who may decide a card that waits on a team, level by level.

Pure: the web layer authenticates a teammate (dashboard login, Slack signature,
API key); this module says whether that teammate may decide the card as it is now.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from signoff.core.cards import Card, Status
from signoff.core.deciders import Decider

# Roles signoff itself gives meaning to; every other role is a team role named by
# actions, as in ``team("support-lead", "finance")``.
ADMIN = "admin"  # manages API keys and teammates; decides nothing by itself
HOST = "host"  # a host site's backend: signs user tokens for its pages
METRICS = "metrics"  # a monitoring system: reads /metrics
RESERVED_ROLES = frozenset({ADMIN, HOST, METRICS})
MACHINE_ROLES = frozenset({HOST, METRICS})  # a program's: reads no cards, decides nothing
ROLE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
TEAMMATE_PREFIX = "teammate:"


class Channel(StrEnum):
    """Where a teammate's decision came from."""

    DASHBOARD = "dashboard"
    SLACK = "slack"
    API = "api"


class Verdict(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class NotAllowed(Exception):
    """The teammate may not decide this card now; the message says why."""


@dataclass(frozen=True)
class Teammate:
    """An authenticated teammate or API key and the roles it holds."""

    name: str
    roles: frozenset[str]
    channel: Channel
    ip: str | None = None
    user_agent: str | None = None
    sites: frozenset[str] | None = None  # the sites whose cards they decide; None: all
    # Who they count as for four eyes: the person of the account that made this one (a key
    # made with an admin key), or None for themselves.
    principal: str | None = None

    def covers(self, site: str) -> bool:
        return self.sites is None or site in self.sites

    @property
    def signature(self) -> str:
        """How this teammate's decisions are signed in cards and the audit log."""
        return TEAMMATE_PREFIX + self.name

    @property
    def person(self) -> str:
        """The person this teammate's decisions count as, signed like a decision."""
        return TEAMMATE_PREFIX + (self.principal or self.name)

    def decider(self, level: int | None) -> Decider:
        """This teammate as the audit log records a decision of theirs on ``level``."""
        return Decider(self.signature, self.ip, self.user_agent, level)

    def may_decide(self, card: Card) -> bool:
        """Whether the card waits on this teammate now (the buttons are shown)."""
        return card.status is Status.WAITING and refusal(card, self) is None


def check_role_name(role: str) -> str:
    if not ROLE_PATTERN.fullmatch(role):
        raise ValueError(
            f"role {role!r}: use lowercase letters, digits, '-', '_' and '.', up to 64 characters"
        )
    return role


def refusal(card: Card, teammate: Teammate) -> str | None:
    """Why ``teammate`` may not decide the card's current level; None if they may.

    One person decides one level only: the levels of a chain are separate sign-offs
    (four eyes), so a teammate who approved level 1 cannot also approve level 2, nor can a
    key made by them, nor two keys made by one admin.
    """
    if card.approver != "team":
        return "this card is the visitor's to decide"
    if not teammate.covers(card.site):
        return f"this card is for the site {card.site!r}, which you do not cover"
    if card.role not in teammate.roles:
        return f"level {card.level} needs the role {card.role}, which you do not have"
    for earlier in card.approvals:
        if earlier["by"] == teammate.signature:
            return "you already decided an earlier level of this card"
        # Records from before principals were kept count as whoever signed them.
        if earlier.get("principal", earlier["by"]) == teammate.person:
            return (
                f"level {earlier['level']} was decided by {earlier['by']}, who counts as the same "
                f"person as you ({teammate.person}): four eyes need two people"
            )
    return None


def check_decider(card: Card, teammate: Teammate) -> None:
    """Raise NotAllowed unless ``teammate`` may decide the card's current level."""
    why = refusal(card, teammate)
    if why is not None:
        raise NotAllowed(why)


def approval(
    card: Card, verdict: Verdict, teammate: Teammate, now: float, reason: str | None
) -> dict[str, Any]:
    """The record of one teammate's decision on the card's current level."""
    return {
        "level": card.level,
        "role": card.role,
        "decision": str(verdict),
        "by": teammate.signature,
        "principal": teammate.person,
        "channel": str(teammate.channel),
        "timestamp": datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z"),
        "reason": reason or None,
    }


def shown_to_visitor(decided_by: str) -> str:
    """A decider as the visitor's widget sees it: teammates' names stay internal."""
    return "teammate" if decided_by.startswith(TEAMMATE_PREFIX) else decided_by
