"""Who may decide a team card's level: roles, sites, and four eyes counted per person."""

from __future__ import annotations

from signoff.core.cards import Card, Status
from signoff.core.teammates import Channel, Teammate, Verdict, approval, refusal
from tests.unit.test_cards import make_card

BOTH = frozenset({"support-lead", "finance"})


def key(name: str, roles: frozenset[str], made_by: str | None = None) -> Teammate:
    """An API key as it decides: a key made through another account counts as its maker."""
    return Teammate(f"key:{name}", roles, Channel.API, principal=made_by)


def level_two_after(first: Teammate) -> Card:
    """A two-level card whose first level ``first`` approved."""
    card = make_card(status=Status.WAITING)
    card.approvals = [approval(card, Verdict.APPROVE, first, 0.0, None)]
    card.level = 2
    return card


def test_an_approval_records_who_decided_and_whom_they_count_as() -> None:
    card = make_card(status=Status.WAITING)
    made = approval(card, Verdict.APPROVE, key("lead-bot", BOTH, "key:admin"), 0.0, None)
    assert (made["by"], made["principal"]) == ("teammate:key:lead-bot", "teammate:key:admin")
    own = approval(card, Verdict.APPROVE, Teammate("lena", BOTH, Channel.DASHBOARD), 0.0, None)
    assert (own["by"], own["principal"]) == ("teammate:lena", "teammate:lena")


def test_one_person_decides_one_level_through_any_of_their_keys() -> None:
    card = level_two_after(key("lead-bot", BOTH, "key:admin"))
    sibling = key("finance-bot", BOTH, "key:admin")
    why = refusal(card, sibling)
    assert why is not None and "four eyes need two people" in why
    assert "teammate:key:lead-bot" in why
    # The maker itself is the same person too; someone else's key is not.
    admin = Teammate("key:admin", BOTH, Channel.API)
    assert refusal(card, admin) is not None
    assert refusal(card, key("finance-2", BOTH, "key:other admin")) is None
    assert refusal(card, key("finance-3", BOTH)) is None


def test_the_same_teammate_is_told_so_plainly() -> None:
    lena = Teammate("lena", BOTH, Channel.DASHBOARD)
    card = level_two_after(lena)
    assert refusal(card, lena) == "you already decided an earlier level of this card"


def test_approvals_recorded_before_principals_count_as_whoever_signed_them() -> None:
    card = make_card(status=Status.WAITING, level=2)
    card.approvals = [
        {"level": 1, "role": "support-lead", "decision": "approve", "by": "teammate:key:admin"}
    ]
    assert refusal(card, key("finance-bot", BOTH, "key:admin")) is not None
    assert refusal(card, key("finance-bot", BOTH)) is None
