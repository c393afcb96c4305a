"""The audit log's hash chain: each site's rows are linked, so an edit, a deletion or an
insertion shows.

Row ``n`` of a site carries ``seq = n``, the hash of row ``n - 1`` (``prev_hash``) and its
own hash (``row_hash``): an HMAC-SHA256 over the row's fields and ``prev_hash``, keyed by a
key derived from the server's secret. Without the secret no one can write a row that
checks, nor mend the chain after removing one. Pure: the audit layer reads the rows and
feeds them to a :class:`ChainCheck`.

Each row also says which fields its hash covers (``chain_version``): version 1 (rows
chained before revision 0004) covers the ``CHAINED`` fields; version 2 adds the row's
database ``id``, the order listings show, and the version itself. A row's hash checks only
under the version it was made with, so changing the version shows like any other edit.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from signoff.core.canonical import canonical_json

GENESIS = "0" * 64  # the prev_hash of a site's first row

# The columns a version 1 hash covers: all but the database id, the version and the hash
# itself (in the order an export lists them; the hash does not depend on it).
CHAINED = (
    "ts",
    "site",
    "session_id",
    "conversation_id",
    "user_id",
    "card_id",
    "action",
    "kind",
    "status",
    "decided_by",
    "level",
    "ip",
    "user_agent",
    "duration_ms",
    "params",
    "result",
    "response",
    "error",
    "seq",
    "prev_hash",
    "key_id",
)


# What version 2 covers beyond version 1: where the row stands in listings, and the
# version, so a row cannot be passed off as one of an older version.
CHAINED_SINCE_2 = ("id", "chain_version")
# What version 3 adds: the call's args and result in words, which exports show beside
# the documents; an edit there would put words in a decider's mouth.
CHAINED_SINCE_3 = ("params_text", "result_text")
CHAIN_VERSION = 3  # the version rows are chained with now
COVERED = {
    1: CHAINED,
    2: (*CHAINED, *CHAINED_SINCE_2),
    3: (*CHAINED, *CHAINED_SINCE_2, *CHAINED_SINCE_3),
}


def chain_key(secret: str) -> bytes:
    """The chain's HMAC key, derived from the server's secret and used for nothing else."""
    return hmac.new(secret.encode(), b"signoff.audit.chain", hashlib.sha256).digest()


def key_id(key: bytes) -> str:
    """A short name for a chain key, kept on each row: it tells which secret wrote it."""
    return hashlib.sha256(b"signoff.audit.chain.id:" + key).hexdigest()[:16]


def row_hash(key: bytes, row: Mapping[str, Any]) -> str:
    """The HMAC of a row as the database gives it back (``prev_hash`` included), over the
    fields its ``chain_version`` covers. ValueError for a version there is none of."""
    version = row.get("chain_version")
    covered = COVERED.get(1 if version is None else version)
    if covered is None:
        raise ValueError(f"no chain version {version!r}")
    fields = {name: _canonical(row.get(name)) for name in covered}
    return hmac.new(key, canonical_json(fields).encode(), hashlib.sha256).hexdigest()


def checks(key: bytes, row: Mapping[str, Any]) -> bool:
    """Whether a row's hash is the one ``key`` makes of it (its key id apart)."""
    try:
        expected = row_hash(key, row)
    except (TypeError, ValueError):  # an unknown version, a value JSON cannot hold
        return False
    return hmac.compare_digest(expected, str(row.get("row_hash") or ""))


def link(
    key: bytes,
    rows: Iterable[MutableMapping[str, Any]],
    ends: dict[str, tuple[int, str]],
    version: int = CHAIN_VERSION,
) -> None:
    """Chain rows, in order, onto the ends of their sites' chains: each row (its ``id``
    given) gets its ``seq``, ``prev_hash``, ``key_id``, ``chain_version`` and ``row_hash``.
    ``ends`` holds each site's last seq and hash, and moves on with the rows. A migration
    passes the ``version`` of its own revision: the columns of later ones are not there."""
    ids = key_id(key)
    for row in rows:
        seq, prev = ends[row["site"]]
        row.update(seq=seq + 1, prev_hash=prev, key_id=ids, chain_version=version)
        row["row_hash"] = row_hash(key, row)
        ends[row["site"]] = (seq + 1, row["row_hash"])


_AS_THEY_ARE = frozenset({str, int, bool, type(None)})


def _canonical(value: Any) -> Any:
    """A value as every backend gives it back: PostgreSQL's JSONB keeps a float as the
    decimal JSON wrote (``2.0**60`` as ``1152921504606847000``) and reads whole ones back
    as integers, so whole floats are hashed as that integer; instants in UTC."""
    if type(value) in _AS_THEY_ARE:  # most values: asked first, as it is the cheapest
        return value
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if type(value) is float and value.is_integer():
        return int(Decimal(repr(value)))
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


class Fault(StrEnum):
    MODIFIED = "modified"
    INSERTED = "inserted"
    DELETED = "deleted"
    FOREIGN_KEY = "foreign_key"  # written under a secret this check was not given
    # Stored as text other than the one form signoff writes for its value: it checks, but
    # SQL and exports read the text (a second key, an offset) where the hash read a value.
    NONCANONICAL = "noncanonical"


@dataclass(frozen=True)
class Problem:
    site: str
    fault: Fault
    seq: int | None  # the row's place in the site's chain (the first missing one if deleted)
    row_id: int | None  # the database id of the row found (None for rows that are gone)
    detail: str

    def __str__(self) -> str:
        where = f"row {self.row_id}" if self.row_id is not None else "rows"
        return f"site {self.site!r}: {where} (seq {self.seq}): {self.fault}: {self.detail}"


@dataclass(frozen=True)
class Anchor:
    """Where a site's chain begins and ends: purges move the start, writes the end."""

    site: str
    purged_seq: int  # the last seq purged; 0 if none
    purged_hash: str  # that row's hash: the prev_hash the first kept row must carry
    seq: int  # the last seq written
    row_hash: str  # that row's hash


class ChainCheck:
    """Checks one site's rows, fed in ``seq`` order, and names the first thing wrong.

    A row whose hash does not match is judged with the row after it: if that row links to
    the row before, the bad one was slipped in (inserted); otherwise it was changed.
    Rows are fed as dicts, each with its database ``id``.
    """

    def __init__(self, keys: Mapping[str, bytes], anchor: Anchor) -> None:
        self.keys = keys
        self.anchor = anchor
        self.expected = anchor.purged_seq + 1
        self.prev = anchor.purged_hash
        self.checked = 0
        self._suspect: Mapping[str, Any] | None = None

    def feed(self, row: Mapping[str, Any]) -> Problem | None:
        if self._suspect is not None:
            suspect, self._suspect = self._suspect, None
            # The next row links past the bad one, to the last good row: the bad one was
            # put in between. Had it been changed, the next row would link to it.
            if row.get("prev_hash") == self.prev:
                return self._problem(Fault.INSERTED, suspect, "its hash does not check")
            return self._problem(Fault.MODIFIED, suspect, "its hash does not match its contents")
        if row.get("key_id") not in self.keys:
            return self._problem(
                Fault.FOREIGN_KEY,
                row,
                f"chained under key {row.get('key_id')}, which none of the secrets given "
                "makes: written before a rotation, or its key id was edited",
            )
        seq = row.get("seq")
        if not self._valid(row):
            if seq is None or seq < self.expected:
                return self._problem(Fault.INSERTED, row, "it has no place in the chain")
            self._suspect = row
            return None
        if seq is None or seq < self.expected:
            return self._problem(Fault.INSERTED, row, f"a copy of row seq {seq}")
        if seq > self.expected:
            return self._gone(self.expected, seq - 1, f"before row {row.get('id')}")
        if row.get("prev_hash") != self.prev:
            return self._problem(Fault.MODIFIED, row, "it does not link to the row before it")
        self.prev = str(row["row_hash"])
        self.expected += 1
        self.checked += 1
        return None

    def end(self) -> Problem | None:
        """After the last row: rows missing at the end, or a bad last row."""
        last = self.anchor.seq
        if self._suspect is not None:
            suspect = self._suspect
            if suspect.get("seq", 0) > last:
                return self._problem(Fault.INSERTED, suspect, "it is past the chain's end")
            return self._problem(Fault.MODIFIED, suspect, "its hash does not match its contents")
        if last >= self.expected:
            return self._gone(self.expected, last, "at the end of the chain")
        if last < self.expected - 1:
            return Problem(
                self.anchor.site,
                Fault.INSERTED,
                last + 1,
                None,
                f"rows after seq {last}, the chain's recorded end",
            )
        if self.prev != self.anchor.row_hash:
            return Problem(
                self.anchor.site,
                Fault.MODIFIED,
                last,
                None,
                "the last row is not the one the chain's end records",
            )
        return None

    def _valid(self, row: Mapping[str, Any]) -> bool:
        key = self.keys.get(str(row.get("key_id")))
        return key is not None and checks(key, row)

    def _problem(self, fault: Fault, row: Mapping[str, Any], detail: str) -> Problem:
        return Problem(self.anchor.site, fault, row.get("seq"), row.get("id"), detail)

    def _gone(self, first: int, last: int, where: str) -> Problem:
        count = last - first + 1
        seqs = f"seq {first}" if count == 1 else f"seq {first} to {last}"
        detail = f"{count} row{'s' if count > 1 else ''} ({seqs}) missing {where}"
        return Problem(self.anchor.site, Fault.DELETED, first, None, detail)
