"""What one visitor may ask of this instance, counted across their sockets: per session
and per client address, on top of each socket's own rate.

A flood split over ten tabs of one session, or over many sessions from one address, meets
the same limits as one socket would.
"""

from __future__ import annotations

from collections import Counter

from signoff.core.ratelimit import KeyedLimiter

# Messages and decisions per session, over all its sockets: what one socket may send
# (a burst, then this rate), however many the session opens.
SESSION_RATE = 5.0
SESSION_BURST = 20
# The same per client address, over all its sessions, come from the settings
# (``address_message_rate``: an office behind one address has several visitors), with a
# burst of this many seconds' worth.
ADDRESS_BURST_SECONDS = 6
# Sockets (tabs) one session may hold open on this instance.
MAX_SOCKETS_PER_SESSION = 8


class VisitorLimits:
    def __init__(self, address_message_rate: float, address_session_rate: float) -> None:
        self._sessions = KeyedLimiter(SESSION_RATE, SESSION_BURST)
        burst = max(int(address_message_rate * ADDRESS_BURST_SECONDS), 1)
        self._addresses = KeyedLimiter(address_message_rate, burst)
        self._sockets: Counter[str] = Counter()
        # New sessions an address may open per minute, over every instance (in the store).
        self.new_sessions_per_minute = address_session_rate

    def take(self, session_id: str, address: str | None, now: float) -> bool:
        """Spend one message or decision of the session's and the address's allowance."""
        session_ok = self._sessions.take(session_id, now)
        address_ok = address is None or self._addresses.take(address, now)
        return session_ok and address_ok

    def join(self, session_id: str) -> bool:
        """A socket follows the session; False (and not counted) when it has too many."""
        if self._sockets[session_id] >= MAX_SOCKETS_PER_SESSION:
            return False
        self._sockets[session_id] += 1
        return True

    def leave(self, session_id: str) -> None:
        self._sockets[session_id] -= 1
        if self._sockets[session_id] <= 0:
            del self._sockets[session_id]


def new_sessions_record(address: str) -> str:
    """The store record counting the sessions an address opened this minute."""
    return f"new-sessions:{address}"
