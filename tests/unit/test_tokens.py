"""Signed tokens: session tokens and host-issued user tokens."""

from __future__ import annotations

from dataclasses import replace

import pytest
from itsdangerous import URLSafeSerializer

from signoff.core.tokens import (
    MAX_USER_ID,
    MAX_USER_TOKEN_TTL,
    SESSION_SALT,
    USER_SALT,
    SessionClaims,
    SessionTooOld,
    TokenError,
    load_session_token,
    load_user_token,
    sign_session_token,
    sign_user_token,
)

SECRET = "test-secret-0123456789abcdef"
OTHER = "other-secret-0123456789abcdef"
CLAIMS = SessionClaims(session_id="s-1", user_id="u-1", site="demo")
NOW = 1_700_000_000.0


def tamper(token: str) -> list[str]:
    """Variants of ``token`` with its payload or signature changed."""
    payload, signature = token.rsplit(".", 1)
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    return [
        f"{payload[:-2]}x{payload[-1]}.{signature}",
        f"{payload}.{signature[:middle]}{flipped}{signature[middle + 1 :]}",
        f"{payload}.",
        payload,
        "",
        "not-a-token",
    ]


def test_session_token_round_trip() -> None:
    token = sign_session_token(SECRET, CLAIMS, now=NOW)
    assert load_session_token(SECRET, token) == replace(CLAIMS, issued_at=NOW)


DAY = 86400.0


def test_a_session_token_lasts_its_lifetime_from_the_start_however_often_resumed() -> None:
    first = load_session_token(SECRET, sign_session_token(SECRET, CLAIMS, now=NOW))
    # Each resume re-signs the claims it loaded: the start travels with them, signed.
    token = sign_session_token(SECRET, first, now=NOW + DAY - 1)
    resumed = load_session_token(SECRET, token, lifetime=DAY, now=NOW + DAY - 1)
    assert resumed.issued_at == NOW
    again = sign_session_token(SECRET, resumed, now=NOW + DAY)
    with pytest.raises(SessionTooOld):
        load_session_token(SECRET, again, lifetime=DAY, now=NOW + DAY)
    assert load_session_token(SECRET, again).issued_at == NOW  # no lifetime asked: no limit


def test_the_start_of_a_session_cannot_be_moved() -> None:
    token = sign_session_token(SECRET, CLAIMS, now=NOW)
    payload = URLSafeSerializer(SECRET, salt=SESSION_SALT).loads(token)
    forged = URLSafeSerializer(OTHER, salt=SESSION_SALT).dumps({**payload, "iat": NOW + DAY})
    with pytest.raises(TokenError):
        load_session_token(SECRET, forged[: forged.rindex(".")] + token[token.rindex(".") :])


@pytest.mark.parametrize("iat", [None, "1700000000", True])
def test_a_session_token_without_a_start_time_is_over(iat: object) -> None:
    claims: dict[str, object] = {"sid": "s-1", "uid": "u-1", "site": "demo"}
    if iat is not None:
        claims["iat"] = iat
    old = URLSafeSerializer(SECRET, salt=SESSION_SALT).dumps(claims)
    with pytest.raises(SessionTooOld, match="lifetime"):
        load_session_token(SECRET, old)


@pytest.mark.parametrize("index", range(6))
def test_tampered_session_token_is_refused(index: int) -> None:
    bad = tamper(sign_session_token(SECRET, CLAIMS))[index]
    with pytest.raises(TokenError):
        load_session_token(SECRET, bad)


def test_session_token_with_swapped_payload_is_refused() -> None:
    mine = sign_session_token(SECRET, CLAIMS)
    theirs = sign_session_token(SECRET, SessionClaims("s-2", "u-2", "demo"))
    forged = theirs.rsplit(".", 1)[0] + "." + mine.rsplit(".", 1)[1]
    with pytest.raises(TokenError):
        load_session_token(SECRET, forged)


def test_session_token_from_another_secret_is_refused() -> None:
    with pytest.raises(TokenError):
        load_session_token(SECRET, sign_session_token(OTHER, CLAIMS))


def test_session_token_with_missing_claims_is_refused() -> None:
    forged = URLSafeSerializer(SECRET, salt=SESSION_SALT).dumps({"sid": "s-1", "uid": "u-1"})
    with pytest.raises(TokenError):
        load_session_token(SECRET, forged)
    not_a_dict = URLSafeSerializer(SECRET, salt=SESSION_SALT).dumps(["s-1", "u-1", "demo"])
    with pytest.raises(TokenError):
        load_session_token(SECRET, not_a_dict)


def test_user_token_round_trip() -> None:
    token = sign_user_token(SECRET, "user-42", ttl=300, now=NOW)
    assert load_user_token(SECRET, token, "demo", now=NOW) == "user-42"
    assert load_user_token(SECRET, token, "other-site", now=NOW + 10) == "user-42"


def test_session_token_is_not_a_user_token_and_back() -> None:
    session = sign_session_token(SECRET, CLAIMS)
    with pytest.raises(TokenError):
        load_user_token(SECRET, session, "demo", now=NOW)
    user = sign_user_token(SECRET, "u-1", now=NOW)
    with pytest.raises(TokenError):
        load_session_token(SECRET, user)
    assert SESSION_SALT != USER_SALT


def test_user_token_signed_with_the_session_salt_is_refused() -> None:
    forged = URLSafeSerializer(SECRET, salt=SESSION_SALT).dumps({"uid": "admin", "exp": NOW + 60})
    with pytest.raises(TokenError):
        load_user_token(SECRET, forged, "demo", now=NOW)


@pytest.mark.parametrize("index", range(6))
def test_tampered_user_token_is_refused(index: int) -> None:
    bad = tamper(sign_user_token(SECRET, "user-42", now=NOW))[index]
    with pytest.raises(TokenError):
        load_user_token(SECRET, bad, "demo", now=NOW)


def test_user_token_from_another_secret_is_refused() -> None:
    with pytest.raises(TokenError):
        load_user_token(SECRET, sign_user_token(OTHER, "user-42", now=NOW), "demo", now=NOW)


def test_user_token_expires() -> None:
    token = sign_user_token(SECRET, "user-42", ttl=300, now=NOW)
    assert load_user_token(SECRET, token, "demo", now=NOW + 299) == "user-42"
    with pytest.raises(TokenError, match="expired"):
        load_user_token(SECRET, token, "demo", now=NOW + 300)
    with pytest.raises(TokenError, match="expired"):
        load_user_token(SECRET, token, "demo", now=NOW + 86_400)


def test_user_token_expiry_uses_the_clock_by_default() -> None:
    fresh = sign_user_token(SECRET, "user-42", ttl=60)
    assert load_user_token(SECRET, fresh, "demo") == "user-42"
    stale = sign_user_token(SECRET, "user-42", ttl=60, now=NOW - 3600)
    with pytest.raises(TokenError):
        load_user_token(SECRET, stale, "demo")


def test_user_token_bound_to_a_site() -> None:
    token = sign_user_token(SECRET, "user-42", site="shop", now=NOW)
    assert load_user_token(SECRET, token, "shop", now=NOW) == "user-42"
    with pytest.raises(TokenError, match="site"):
        load_user_token(SECRET, token, "demo", now=NOW)


@pytest.mark.parametrize("user_id", ["", "x" * (MAX_USER_ID + 1)])
def test_user_id_length_is_checked(user_id: str) -> None:
    with pytest.raises(TokenError):
        sign_user_token(SECRET, user_id)


def test_longest_user_id_is_accepted() -> None:
    user_id = "x" * MAX_USER_ID
    token = sign_user_token(SECRET, user_id, now=NOW)
    assert load_user_token(SECRET, token, "demo", now=NOW) == user_id


@pytest.mark.parametrize(
    "ttl",
    [0, -1, float("nan"), float("inf"), -float("inf"), MAX_USER_TOKEN_TTL + 1, 86400 * 365],
)
def test_ttl_must_be_positive_finite_and_short(ttl: float) -> None:
    with pytest.raises(TokenError, match="ttl must be a number of seconds above 0 and at most"):
        sign_user_token(SECRET, "user-42", ttl=ttl)


def test_the_longest_ttl_is_accepted() -> None:
    token = sign_user_token(SECRET, "user-42", ttl=MAX_USER_TOKEN_TTL, now=NOW)
    assert load_user_token(SECRET, token, "demo", now=NOW + MAX_USER_TOKEN_TTL - 1) == "user-42"


def test_user_token_missing_expiry_is_refused() -> None:
    forged = URLSafeSerializer(SECRET, salt=USER_SALT).dumps({"uid": "user-42"})
    with pytest.raises(TokenError):
        load_user_token(SECRET, forged, "demo", now=NOW)
