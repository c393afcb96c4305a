"""Who decided a card, or tried to: what the audit log records of them."""

from __future__ import annotations

from dataclasses import dataclass

# An address and a User-Agent header, as the web layer reads them off a request or socket.
Client = tuple[str | None, str | None]
NO_CLIENT: Client = (None, None)

# Enough for any real browser's; a longer header is cut, since anyone can send one and
# every refused attempt copies it into a row.
MAX_USER_AGENT = 256


def bounded_user_agent(user_agent: str | None) -> str | None:
    """A User-Agent header as the audit log keeps it: its first ``MAX_USER_AGENT``
    characters."""
    return None if user_agent is None else user_agent[:MAX_USER_AGENT]


@dataclass(frozen=True)
class Decider:
    """One decision's author, carried from the door that received it to its audit rows.

    Kept in memory only: the run follows the claim in the same task, so the decider's
    address and browser never need to be stored on the card or shown in a frame.
    """

    signature: str  # "auto", "user:<id>", "teammate:<name>", or who a refused caller claimed
    ip: str | None = None
    user_agent: str | None = None
    level: int | None = None  # the approval level of a team card this decision was on

    def __post_init__(self) -> None:
        # Whoever built it, the row gets a bounded header.
        object.__setattr__(self, "user_agent", bounded_user_agent(self.user_agent))

    @classmethod
    def at(cls, signature: str, client: Client, level: int | None = None) -> Decider:
        ip, user_agent = client
        return cls(signature, ip, user_agent, level)


AUTO = Decider("auto")  # calls no card held
