"""The Redis store: live state shared by every server process of a deployment.

Any instance can serve any request: a session's state lives in Redis, each step
that must happen once is one Lua script, and pub/sub only wakes the other instances
that hold a session's sockets (it never carries data; they read the frames from the
stream, and the writing instance hands its own sockets the frames it wrote). The news
listener is in ``redis_news.py``, the turns this instance holds (the turn lock, and the
frames a turn holds back) in ``redis_turns.py``; the scripts are the ``.lua`` files in
``redis_lua/``. One Redis (``redis://``) or a Redis Cluster
(``redis-cluster://host:port,host:port``); docs/deploying.md says how each fails over.
Keys, under one prefix per deployment (``?prefix=``, default ``signoff``). ``{T}`` is the
session's tag (``core.cards.session_tag``) in braces, as in
``signoff:session:{3fa0c1d2}:s_Xy``; a card's id carries the tag too. ``{L}`` is an
outbox lane's name in braces::

    {p}:session:{T}:{sid}       hash    user_id, site, conversation_id, created_at, expires_at
    {p}:conversation:{T}:{sid}  string  the conversation, as JSON
    {p}:seq:{T}:{sid}           string  the last frame seq handed out
    {p}:frames:{T}:{sid}        stream  frame history, entry id "<seq>-0", newest max_frames kept
    {p}:client_ids:{T}:{sid}    set     client_ids already handled
    {p}:cards:{T}:{sid}         list    the session's card ids, oldest first
    {p}:card:{T}:{card_id}      hash    body (the card as JSON) and each field changed since
    {p}:turn-lock:{T}:{sid}     string  the session's turn lock, renewed while held
    {p}:listeners:{T}:{sid}     set     the instances following the session (its sockets)
    {p}:sessions                zset    session id -> expires_at: what the sweepers end
    {p}:due                     zset    card id -> deadline while open, next check while claimed
    {p}:team                    zset    card id -> created_at, for cards that wait on teammates
    {p}:waiting                 zset    card id -> created_at, for those waiting on them now
    {p}:record:{name}           string  a small value with a TTL (dashboard logins, Slack ids)
    {p}:alive:{instance}        string  this instance's heartbeat, lapsing ALIVE_FOR seconds
                                        after its last beat; a card hash's ``_by`` names who
                                        claimed it
    {p}:news:{sid}              channel "<instance>:frames" or "<instance>:end"
    {p}:outbox:{L}              list    deliveries waiting to be sent, oldest first, capped
    {p}:outbox-lease:{L}        string  who works the lane, lapsing unless renewed

The braces are Redis hash tags: a Redis Cluster keeps every key of a session and its
cards in one slot, and a lane's two keys in one, so each script's keys are on one node.
Every key a script uses is given to it in KEYS. The four global indexes (sessions, due,
team, waiting) are written next to the scripts, not in them, so they are hints that
whoever reads them checks against the session or card; exactly-once rests on the card
scripts alone. Every per-session key expires ``KEY_GRACE`` seconds after the session's
idle expiry, so nothing outlives a session even when no instance is left to sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection, UnixDomainSocketConnection

from signoff.core.cards import (
    CLAIMED,
    FINAL,
    OPEN,
    Card,
    Status,
    can_move,
    card_tag,
    session_tag,
)
from signoff.core.conversation import Conversation
from signoff.store.base import (
    MAX_CARDS,
    MAX_FRAMES,
    ClaimOutcome,
    Listener,
    News,
    SessionRecord,
    Store,
    StoreError,
    Transition,
    TurnStart,
    max_frames_option,
)
from signoff.store.redis_lua import SCRIPTS
from signoff.store.redis_news import NewsListener
from signoff.store.redis_outage import UNAVAILABLE, reachable
from signoff.store.redis_turns import HeldTurns
from signoff.store.shared_connection import Arg, SharedConnection

log = logging.getLogger("signoff.store")

# How long a session's keys outlive its idle expiry: time for a sweeper to expire its
# cards and audit them. Past that, Redis drops the keys by itself.
KEY_GRACE = 3600.0
# Each instance beats this often while it runs; one silent for ALIVE_FOR seconds has
# stopped, and the cards it had claimed are settled as interrupted by another.
HEARTBEAT = 1.0
ALIVE_FOR = 5.0
# How often the sweepers look in on a claimed card's instance.
CLAIM_CHECK = 2.0
# Connections per instance where commands are not sent on one shared connection (on a
# cluster, and for TLS): a command holds one until its reply, so the pool bounds how many
# turns talk to Redis at once; waiting past POOL_WAIT is an outage.
POOL_SIZE = 512
POOL_WAIT = 10.0
# How long a command may wait for its reply before Redis counts as unreachable.
REPLY_TIMEOUT = 5.0
_PREFIX = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
# How often a script that reaches each card of a session is run again when the session's
# cards change under it; a turn adds cards one at a time, so this is never reached.
STALE_RETRIES = 20
# Sessions whose card ids an instance remembers, to pass the right ones the first time
# (and cards whose session it remembers).
KNOWN_CARDS_KEPT = 10_000

# The Lua scripts: redis_lua/, one .lua file each.
# The ended statuses as stored (JSON strings), for the scripts to find one in.
_FINAL_STATUSES = " ".join(json.dumps(str(status)) for status in sorted(FINAL))
# The open statuses as stored, for begin.lua to find one in.
_OPEN_STATUSES = " ".join(json.dumps(str(status)) for status in sorted(OPEN))
# The indexes that hold cards.
_CARD_INDEXES = ("due", "team", "waiting")


def _due_score(card: Card, check_by: float | None) -> float | None:
    """The card's place in the due index: its deadline while open; while claimed, its lease
    end, or ``check_by`` if sooner (when its claiming instance is looked in on); none
    once ended."""
    if card.status in OPEN:
        return card.timeout_at
    if card.status in CLAIMED:
        lease = card.lease_until or 0.0
        return lease if check_by is None else min(check_by, lease)
    return None


def _seed_node(url: str, seed: str) -> tuple[str, int]:
    """``host:port`` of one seed node of a ``redis-cluster://`` URL."""
    host, _, port = seed.rpartition(":")
    host = host.strip("[]")  # an IPv6 address
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise StoreError(
            f"SIGNOFF_STORE: bad Redis Cluster URL {url!r}: seed node {seed!r} is not"
            " host:port (give one or more, comma-separated)"
        )
    return host, int(port)


def _decode_card(fields: dict[str, str]) -> Card | None:
    if not fields:
        return None
    data = json.loads(fields["body"])
    for name, value in fields.items():
        if name != "body" and not name.startswith("_"):
            data[name] = json.loads(value)
    return Card.from_dict(data)


def _as_sent(response: Any, **options: Any) -> Any:
    """A redis-py reply callback that keeps the reply as Redis sent it."""
    return response


def _shared(pool: BlockingConnectionPool) -> SharedConnection | None:
    """A shared connection to the Redis ``pool`` connects to; none over TLS, whose
    options are redis-py's to apply."""
    options = pool.connection_kwargs
    where: dict[str, Any]
    if pool.connection_class is Connection:
        where = {"host": options.get("host", "localhost"), "port": int(options.get("port", 6379))}
    elif pool.connection_class is UnixDomainSocketConnection:
        where = {"path": options["path"]}
    else:
        return None
    return SharedConnection(
        **where,
        db=int(options.get("db") or 0),
        username=options.get("username"),
        password=options.get("password"),
        connect_timeout=float(options.get("socket_connect_timeout") or 2.0),
        reply_timeout=float(options.get("socket_timeout") or REPLY_TIMEOUT),
    )


def _scores(flat: list[str]) -> dict[str, float]:
    """A sorted set's members and scores, from a reply WITHSCORES."""
    return {member: float(score) for member, score in zip(flat[::2], flat[1::2], strict=True)}


def _decode_pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _session(session_id: str, fields: dict[str, str]) -> SessionRecord:
    return SessionRecord(
        session_id,
        fields["user_id"],
        fields["site"],
        fields["conversation_id"],
        float(fields["created_at"]),
        float(fields["expires_at"]),
    )


class RedisStore(Store):
    def __init__(
        self,
        redis: Redis | RedisCluster,
        prefix: str = "signoff",
        max_frames: int = MAX_FRAMES,
        news: Sequence[Redis] = (),
        shared: SharedConnection | None = None,
    ):
        """``news``: for a cluster, a plain client per node to hear news through (any node
        relays every PUBLISH), tried in turn; without, news comes through ``redis``.
        ``shared``: the connection every command but pub/sub goes through; without, each
        goes through ``redis``."""
        self.redis = redis
        self.shared = shared
        # Replies as Redis sends them, as the shared connection gives them.
        for command in ("HGETALL", "XRANGE", "ZRANGE", "ZRANGEBYSCORE"):
            redis.set_response_callback(command, _as_sent)
        self.prefix = prefix
        self.max_frames = max_frames
        # Tells this instance's own news apart from the other instances'.
        self.instance = secrets.token_hex(6)
        self._scripts = {name: redis.register_script(source) for name, source in SCRIPTS.items()}
        self._news = NewsListener(
            redis,
            news,
            channel=self._news_channel,
            own_channel=self._key("instance", self.instance),
            instance=self.instance,
            follow=self._follow,
            closing=lambda: self._closing,
        )
        self._turns = HeldTurns(
            instance=self.instance,
            begin=self._begin_turn,
            write=self._write,
            renew=self._renew_turn,
        )
        self._beating: asyncio.Task[None] | None = None
        self._closing = False
        self._known_cards: dict[str, list[str]] = {}
        # The sessions of cards this instance made or read: a card's never changes.
        self._card_sessions: dict[str, str] = {}

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        """``redis://host:port/db?prefix=shop&max_frames=2000`` (plus redis-py's options),
        or ``redis-cluster://host:port,host:port?prefix=shop`` for a Redis Cluster."""
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        prefix = query.pop("prefix", "signoff")
        if not _PREFIX.match(prefix):
            raise StoreError(f"SIGNOFF_STORE: prefix {prefix!r} must match {_PREFIX.pattern}")
        max_frames = max_frames_option(query)
        if parts.scheme == "redis-cluster":
            return cls._cluster(url, parts, query, prefix, max_frames)
        try:
            pool = BlockingConnectionPool.from_url(
                # The URL as given without signoff's options (urlunsplit would write
                # unix:///path as unix:/path, which redis-py refuses).
                url.partition("?")[0] + (f"?{urlencode(query)}" if query else ""),
                decode_responses=True,
                max_connections=POOL_SIZE,
                timeout=POOL_WAIT,
                socket_connect_timeout=2,
                socket_timeout=REPLY_TIMEOUT,
                health_check_interval=15,
                # Replies as the shared connection reads them (redis-py 6 and later speak
                # RESP3 unless told).
                protocol=2,
            )
        except ValueError as exc:
            raise StoreError(f"SIGNOFF_STORE: bad Redis URL {url!r}: {exc}") from None
        return cls(Redis(connection_pool=pool), prefix, max_frames, shared=_shared(pool))

    @classmethod
    def _cluster(
        cls, url: str, parts: SplitResult, query: dict[str, str], prefix: str, max_frames: int
    ) -> RedisStore:
        """A store on a Redis Cluster, found through its seed nodes."""
        nodes = [_seed_node(url, seed) for seed in parts.netloc.rpartition("@")[2].split(",")]
        if query:
            raise StoreError(
                f"SIGNOFF_STORE: bad Redis Cluster URL {url!r}: unknown option"
                f" {', '.join(sorted(query))} (it takes prefix and max_frames)"
            )
        options: dict[str, Any] = {
            "username": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None,
            "decode_responses": True,
            "socket_connect_timeout": 2,
            "socket_timeout": REPLY_TIMEOUT,
            "protocol": 2,
        }
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in nodes],
            max_connections=POOL_SIZE,
            **options,
        )
        news = [Redis(host=host, port=port, **options) for host, port in nodes]
        return cls(cluster, prefix, max_frames, news)

    # Keys ---------------------------------------------------------------------------------
    # Every key name is made here. A session's keys and its cards' carry the session's
    # hash tag ({...}), so a Redis Cluster keeps them in one slot and one script can use
    # them all; a card's tag comes from its id (core.cards.card_id_for).

    def _key(self, kind: str, name: str | None = None) -> str:
        """A global key name; with ``name=""``, the prefix that names of this kind share."""
        return f"{self.prefix}:{kind}" if name is None else f"{self.prefix}:{kind}:{name}"

    def _session_key(self, kind: str, session_id: str) -> str:
        """One of the session's keys, in the session's slot."""
        return f"{self.prefix}:{kind}:{{{session_tag(session_id)}}}:{session_id}"

    def _card_key(self, card_id: str) -> str:
        """The card's hash, in its session's slot. An id that carries no tag was not made
        for any session: it gets a slot of its own, where no card is ever kept."""
        tag = card_tag(card_id) or session_tag(card_id)
        return f"{self.prefix}:card:{{{tag}}}:{card_id}"

    def _session_keys(self, session_id: str) -> list[str]:
        """session, cards, then the rest of the session's keys (the cards' own not included)."""
        return [
            self._session_key("session", session_id),
            self._session_key("cards", session_id),
            self._session_key("conversation", session_id),
            self._session_key("seq", session_id),
            self._session_key("frames", session_id),
            self._session_key("client_ids", session_id),
            self._session_key("listeners", session_id),
        ]

    def _turn_key(self, session_id: str) -> str:
        return self._session_key("turn-lock", session_id)

    def _write_keys(self, session_id: str) -> list[str]:
        """The keys of ``write.lua``, in its order."""
        return [
            self._session_key("session", session_id),
            self._session_key("seq", session_id),
            self._session_key("frames", session_id),
            self._session_key("conversation", session_id),
            self._turn_key(session_id),
            self._session_key("listeners", session_id),
        ]

    def _news_channel(self, session_id: str) -> str:
        """Pub/sub channels are not keys: a PUBLISH reaches every node of a cluster."""
        return self._key("news", session_id)

    def _outbox_keys(self, lane: str) -> list[str]:
        """The lane's list and its lease, tagged with the lane: one slot per lane."""
        return [self._key("outbox", f"{{{lane}}}"), self._key("outbox-lease", f"{{{lane}}}")]

    # Commands -----------------------------------------------------------------------------
    # Every command but pub/sub goes through these three, on the shared connection when
    # there is one; replies are as Redis sends them either way.

    async def _call(self, *args: Arg) -> Any:
        if self.shared is not None:
            return await self.shared.call(*args)
        return await self.redis.execute_command(*args)

    async def _call_all(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Several commands sent together (on a cluster, to whichever nodes hold their keys)."""
        if not commands:
            return []
        if self.shared is not None:
            return await self.shared.call_all(commands)
        pipe = self.redis.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return await pipe.execute()

    async def _run(self, script: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """One of the store's scripts, loaded into Redis the first time it is missing."""
        registered = self._scripts[script]
        if self.shared is None:
            return await registered(keys=keys, args=args)
        command: list[Arg] = ["EVALSHA", registered.sha, len(keys), *keys, *args]
        try:
            return await self.shared.call(*command)
        except redis_errors.NoScriptError:
            await self.shared.call("SCRIPT", "LOAD", SCRIPTS[script])
            return await self.shared.call(*command)

    # Lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            await self._call("PING")
        except (*UNAVAILABLE, redis_errors.RedisClusterException) as exc:
            raise StoreError(f"SIGNOFF_STORE: cannot reach Redis: {exc}") from None
        try:
            await self._news.start()
        except UNAVAILABLE as exc:
            raise StoreError(f"SIGNOFF_STORE: cannot reach Redis: {exc}") from None
        await self._beat()
        self._beating = asyncio.get_running_loop().create_task(self._heartbeat())

    async def close(self) -> None:
        self._closing = True
        await self._news.close()
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beating
            self._beating = None
        if self.shared is not None:
            await self.shared.close()
        await self.redis.aclose()

    async def _beat(self) -> None:
        await self._call("SET", self._key("alive", self.instance), "1", "PX", int(ALIVE_FOR * 1000))

    async def _heartbeat(self) -> None:
        """Say this instance is alive, so others leave its claimed cards to it."""
        # Not only cancelled: redis-py may swallow a cancellation that lands mid-command.
        while not self._closing:
            await asyncio.sleep(HEARTBEAT)
            try:
                await self._beat()
            except UNAVAILABLE as exc:
                log.warning("cannot beat in Redis (%s); retrying", exc)

    async def _stopped(self, card_ids: list[str]) -> set[str]:
        """Those of the claimed ``card_ids`` whose claiming instance has stopped beating."""
        owners = await self._call_all(
            [("HGET", self._card_key(card_id), "_by") for card_id in card_ids]
        )
        # A claim that names no instance (made before claims did) waits for its lease.
        named = [(card_id, owner) for card_id, owner in zip(card_ids, owners, strict=True) if owner]
        alive = await self._call_all([("EXISTS", self._key("alive", owner)) for _, owner in named])
        return {card_id for (card_id, _), up in zip(named, alive, strict=True) if not up}

    @reachable
    async def ping(self) -> None:
        await self._call("PING")

    # Global indexes -----------------------------------------------------------------------
    # {p}:sessions, {p}:due, {p}:team and {p}:waiting are one key each, so on a cluster no
    # session script can write them: each method writes them beside its script (after it;
    # a new session's entry before it). An entry is a hint, never the truth: whoever reads
    # one reads the session or card too, decides from that, and corrects the entry.
    # Nothing exactly-once depends on them.

    async def _scored(self, index: str, up_to: float) -> dict[str, float]:
        """Members of an index with a score up to ``up_to``, with their scores."""
        flat = await self._call("ZRANGEBYSCORE", self._key(index), "-inf", up_to, "WITHSCORES")
        return _scores(flat)

    async def _reindex(
        self, index: str, seen: dict[str, float], fixes: dict[str, float | None]
    ) -> None:
        """Set each entry of ``fixes`` to its score (None: remove it), if it still has the
        score it was ``seen`` with."""
        args: list[Any] = []
        for member, score in fixes.items():
            if member in seen:
                args += [member, repr(seen[member]), "" if score is None else repr(score)]
        if args:
            await self._run("reindex", [self._key(index)], args)

    def _know_cards(self, session_id: str, card_ids: list[str]) -> None:
        """Remember a session's card ids, the next guess of ``_with_cards``; a bounded
        number of sessions, the most recently used."""
        self._known_cards.pop(session_id, None)
        self._known_cards[session_id] = card_ids
        if len(self._known_cards) > KNOWN_CARDS_KEPT:
            del self._known_cards[next(iter(self._known_cards))]

    async def _with_cards(
        self, script: str, session_id: str, keys: list[str], args: list[Any]
    ) -> tuple[Any, list[str]]:
        """Run a script that reaches each card of the session (see ``stale_cards.lua``): its
        reply, and the card ids it was run with."""
        # First guess: the ids last seen here, else none (most sessions have no card).
        card_ids = self._known_cards.get(session_id, [])
        for _ in range(STALE_RETRIES):
            reply = await self._run(
                script,
                [*keys, *(self._card_key(card_id) for card_id in card_ids)],
                [*args, *card_ids],
            )
            if not (isinstance(reply, list) and reply[:1] == ["stale"]):
                self._know_cards(session_id, card_ids)
                return reply, card_ids
            card_ids = reply[1:]
        raise StoreError(f"the cards of session {session_id} kept changing under {script}")

    # Sessions ---------------------------------------------------------------------------
    @reachable
    async def create_session(self, session: SessionRecord) -> None:
        # Indexed first: an entry for a session that was not made is dropped when read.
        await self._call("ZADD", self._key("sessions"), session.expires_at, session.session_id)
        ttl = int((session.expires_at - session.created_at + KEY_GRACE) * 1000)
        fields = {
            "user_id": session.user_id,
            "site": session.site,
            "conversation_id": session.conversation_id,
            "created_at": repr(session.created_at),
            "expires_at": repr(session.expires_at),
        }
        await self._run(
            "create",
            [self._session_key("session", session.session_id)],
            [ttl, *(item for pair in fields.items() for item in pair)],
        )

    @reachable
    async def get_session(self, session_id: str, now: float) -> SessionRecord | None:
        fields = _decode_pairs(
            await self._call("HGETALL", self._session_key("session", session_id))
        )
        if not fields or float(fields["expires_at"]) <= now:
            return None
        return _session(session_id, fields)

    @reachable
    async def get_sessions(
        self, session_ids: Collection[str], now: float
    ) -> dict[str, SessionRecord]:
        wanted = list(set(session_ids))
        found = await self._call_all(
            [("HGETALL", self._session_key("session", session_id)) for session_id in wanted]
        )
        return {
            sid: _session(sid, fields)
            for sid, fields in zip(wanted, map(_decode_pairs, found), strict=True)
            if fields and float(fields["expires_at"]) > now
        }

    @reachable
    async def touch_session(self, session_id: str, ttl: float, now: float) -> SessionRecord | None:
        flat, _ = await self._with_cards(
            "touch",
            session_id,
            self._session_keys(session_id),
            [repr(now), repr(now + ttl), repr(KEY_GRACE)],
        )
        # Not indexed anew: the entry, now earlier than the session's expiry, is put right
        # when it comes due (``expired_sessions``), once per idle period at most.
        return _session(session_id, _decode_pairs(flat)) if flat else None

    @reachable
    async def expired_sessions(self, now: float) -> list[str]:
        seen = await self._scored("sessions", now)
        found = await self._call_all(
            [
                ("HGET", self._session_key("session", session_id), "expires_at")
                for session_id in seen
            ]
        )
        expired: list[str] = []
        fixes: dict[str, float | None] = {}
        for session_id, expires in zip(seen, found, strict=True):
            if expires is None:
                fixes[session_id] = None  # ended, or its keys lapsed with no sweeper running
            elif float(expires) <= now:
                expired.append(session_id)
            else:
                fixes[session_id] = float(expires)  # slid later than the entry says
        await self._reindex("sessions", seen, fixes)
        return expired

    @reachable
    async def end_session(self, session_id: str, reason: str) -> None:
        existed, card_ids = await self._with_cards(
            "end",
            session_id,
            self._session_keys(session_id),
            [self._news_channel(session_id), self.instance],
        )
        self._known_cards.pop(session_id, None)
        unindexed: list[list[Arg]] = [["ZREM", self._key("sessions"), session_id]]
        if card_ids:
            unindexed += [["ZREM", self._key(index), *card_ids] for index in _CARD_INDEXES]
        await self._call_all(unindexed)
        if existed:
            self._news.notify(session_id, News("end"))

    # Conversation -----------------------------------------------------------------------
    @reachable
    async def load_conversation(self, session_id: str) -> Conversation:
        held = self._turns.holding(session_id)
        if held is not None:
            text = held.conversation
        else:
            text = await self._call("GET", self._session_key("conversation", session_id))
        return json.loads(text) if text else []

    @reachable
    async def save_conversation(self, session_id: str, conversation: Conversation) -> None:
        held = self._turns.holding(session_id)
        if held is not None:
            held.conversation, held.unsaved = json.dumps(conversation), True
            return  # written when the turn ends, or with what must be written before that
        await self._write(session_id, conversation=json.dumps(conversation))

    # Frame history ----------------------------------------------------------------------
    @reachable
    async def append_frames(self, session_id: str, frames: Sequence[dict[str, Any]]) -> None:
        # ASCII escapes: a lone surrogate in bot text must not make history unsendable.
        texts = [json.dumps(frame) for frame in frames]
        if not self._turns.append(session_id, texts):
            await self._write(session_id, texts)

    async def _write(
        self,
        session_id: str,
        texts: Sequence[str] = (),
        conversation: str = "",
        token: str = "",
    ) -> bool:
        """One ``write.lua``: frames, conversation, the turn's release. False when ``token``
        no longer held the turn."""
        last, held = await self._run(
            "write",
            self._write_keys(session_id),
            [
                self.max_frames,
                self._news_channel(session_id),
                self.instance,
                conversation,
                token,
                *texts,
            ],
        )
        if last:
            # The frames as the script numbered them: this instance's sockets need not read
            # them back.
            first = int(last) - len(texts) + 1
            numbered = tuple(
                (seq, f'{text[:-1]},"seq":{seq}}}') for seq, text in enumerate(texts, first)
            )
            self._news.notify(session_id, News("frames", numbered))
        return bool(held)

    @reachable
    async def frames_after(self, session_id: str, seq: int) -> list[tuple[int, str]]:
        entries = await self._call(
            "XRANGE", self._session_key("frames", session_id), f"{max(seq, 0) + 1}-0", "+"
        )
        # Each entry is [id, ["f", frame]].
        return [(int(entry_id.partition("-")[0]), fields[1]) for entry_id, fields in entries]

    @reachable
    async def last_seq(self, session_id: str) -> int:
        return int(await self._call("GET", self._session_key("seq", session_id)) or 0)

    # Cards ------------------------------------------------------------------------------
    @reachable
    async def add_card(self, card: Card) -> None:
        # A card is kept after the conversation that proposed it: a decision taken on
        # another instance resumes from that conversation.
        await self._turns.catch_up(card.session_id)
        if card_tag(card.card_id) != session_tag(card.session_id):
            raise ValueError(f"card id {card.card_id!r} was not made for its session")
        reply, card_ids = await self._with_cards(
            "add_card",
            card.session_id,
            [
                self._session_key("session", card.session_id),
                self._session_key("cards", card.session_id),
                self._card_key(card.card_id),
            ],
            [
                card.card_id,
                json.dumps(card.to_dict()),
                json.dumps(str(card.status)),
                json.dumps(card.updated_at),
                json.dumps(card.lease_until),
                repr(card.timeout_at),
                card.session_id,
                json.dumps(card.level),
                MAX_CARDS,
                _FINAL_STATUSES,
            ],
        )
        if not reply:
            return  # its session has ended
        self._know_session(card)
        dropped = reply[1:]
        self._know_cards(
            card.session_id, [i for i in (*card_ids, card.card_id) if i not in dropped]
        )
        indexed: list[list[Arg]] = []
        due = _due_score(card, None)
        if due is not None:
            indexed.append(["ZADD", self._key("due"), due, card.card_id])
        if card.approver == "team":
            indexed.append(["ZADD", self._key("team"), card.created_at, card.card_id])
        if card.status == Status.WAITING:
            indexed.append(["ZADD", self._key("waiting"), card.created_at, card.card_id])
        if dropped:
            indexed += [["ZREM", self._key(index), *dropped] for index in _CARD_INDEXES]
        await self._call_all(indexed)

    @reachable
    async def get_card(self, card_id: str) -> Card | None:
        card = _decode_card(_decode_pairs(await self._call("HGETALL", self._card_key(card_id))))
        if card is not None:
            self._know_session(card)
        return card

    def _know_session(self, card: Card) -> None:
        self._card_sessions[card.card_id] = card.session_id
        if len(self._card_sessions) > KNOWN_CARDS_KEPT:
            del self._card_sessions[next(iter(self._card_sessions))]

    async def _card_ids(self, session_id: str) -> list[str]:
        card_ids: list[str] = await self._call(
            "LRANGE", self._session_key("cards", session_id), 0, -1
        )
        return card_ids

    async def _cards(self, card_ids: list[str]) -> dict[str, Card | None]:
        found = await self._call_all([("HGETALL", self._card_key(card_id)) for card_id in card_ids])
        return {
            card_id: _decode_card(_decode_pairs(flat))
            for card_id, flat in zip(card_ids, found, strict=True)
        }

    @reachable
    async def session_cards(self, session_id: str) -> list[Card]:
        card_ids = await self._card_ids(session_id)
        return [card for card in (await self._cards(card_ids)).values() if card is not None]

    @reachable
    async def transition(
        self,
        card_id: str,
        expected: Collection[Status],
        new: Status,
        now: float,
        changes: dict[str, Any] | None = None,
        check_deadline: bool = False,
        level: int | None = None,
    ) -> Transition:
        changes = changes or {}
        keys = [self._card_key(card_id)]
        session_id = ""
        if check_deadline:
            # The script reads the session's expiry, so it must be given the session's key.
            found = self._card_sessions.get(card_id)
            if found is None:
                found = await self._call("HGET", keys[0], "_sid")
            if not found:
                return Transition(ClaimOutcome.MISSING, None)
            session_id = found
            keys.append(self._session_key("session", session_id))
        args: list[Any] = [
            repr(now),
            json.dumps(str(new)),
            "1" if check_deadline else "0",
            session_id,
            "1" if new in CLAIMED else "0",
            str(level) if level is not None else "",
            self.instance,
        ]
        movable = [s for s in expected if can_move(s, new)]
        for statuses in (list(expected), movable):
            args += [len(statuses), *(json.dumps(str(s)) for s in statuses)]
        for name, value in changes.items():
            args += [name, json.dumps(value)]
        reply = await self._run("transition", keys, args)
        outcome = reply[0]
        if outcome == "missing":
            return Transition(ClaimOutcome.MISSING, None)
        if outcome == "badmove":
            raise ValueError(f"a card cannot move from {json.loads(reply[1])} to {new}")
        card = _decode_card(_decode_pairs(reply[1]))
        if outcome != "conflict" and card is not None:
            await self._index_moved(card, Status(json.loads(reply[2])), now)
        return Transition(ClaimOutcome(outcome), card)

    async def _index_moved(self, card: Card, was: Status, now: float) -> None:
        """Put a card that moved from ``was`` where its new status has it in the due and
        waiting indexes. A move between claimed statuses leaves the due entry alone: the
        claim put it where the sweeper looks in on the claiming instance, and each look
        puts it a little later (``due_cards``)."""
        due = _due_score(card, now + CLAIM_CHECK)
        moved_due = due is None or not (card.status in CLAIMED and was in CLAIMED)
        left_waiting = was is Status.WAITING and card.status is not Status.WAITING
        if not (moved_due or left_waiting):
            return
        indexed: list[list[Arg]] = []
        if due is None:
            indexed.append(["ZREM", self._key("due"), card.card_id])
        elif moved_due:
            indexed.append(["ZADD", self._key("due"), due, card.card_id])
        if left_waiting:
            indexed.append(["ZREM", self._key("waiting"), card.card_id])
        await self._call_all(indexed)

    @reachable
    async def due_cards(self, now: float) -> list[Card]:
        seen = await self._scored("due", now)
        card_ids = list(seen)
        ended = set(await self.expired_sessions(now))
        for session_id in ended:
            card_ids += await self._card_ids(session_id)
        due, running = [], []
        fixes: dict[str, float | None] = {}
        for card_id, card in (await self._cards(list(dict.fromkeys(card_ids)))).items():
            if card is None:
                # Its session's keys expired with no sweeper running: nothing left to settle.
                fixes[card_id] = None
                continue
            late = now >= card.timeout_at or card.session_id in ended
            open_and_late = card.status in OPEN and late
            lease_over = card.status in CLAIMED and (card.lease_until or 0) <= now
            if open_and_late or lease_over:
                due.append(card)
            elif card.status in CLAIMED:
                running.append(card)
            else:  # indexed earlier than it is due, or ended: put right
                fixes[card_id] = card.timeout_at if card.status in OPEN else None
        if running:
            stopped = await self._stopped([card.card_id for card in running])
            due += [card for card in running if card.card_id in stopped]
            # Those whose instance still beats are checked on again a little later.
            for card in running:
                fixes[card.card_id] = _due_score(card, now + CLAIM_CHECK)
        await self._reindex("due", seen, fixes)
        return due

    @reachable
    async def team_cards(self, limit: int) -> list[Card]:
        if limit <= 0:
            return []
        return await self._indexed("team", -limit, -1, newest_first=True)

    async def _indexed(
        self, index: str, start: int, stop: int, newest_first: bool = False
    ) -> list[Card]:
        """The cards of a card index between two ranks, dropping ids whose card is gone
        (and, from the waiting index, those no longer waiting)."""
        seen = _scores(await self._call("ZRANGE", self._key(index), start, stop, "WITHSCORES"))
        card_ids = list(seen)
        if newest_first:
            card_ids.reverse()
        found = await self._cards(card_ids)
        waiting_only = index == "waiting"
        gone: dict[str, float | None] = {
            card_id: None
            for card_id, card in found.items()
            if card is None or (waiting_only and card.status != Status.WAITING)
        }
        await self._reindex(index, seen, gone)  # their sessions' keys expired, or a late write
        return [card for card_id, card in found.items() if card is not None and card_id not in gone]

    @reachable
    async def waiting_cards(self, limit: int) -> list[Card]:
        return await self._indexed("waiting", 0, limit - 1) if limit > 0 else []

    # Records ----------------------------------------------------------------------------
    @reachable
    async def put_record(self, name: str, value: str, ttl: float) -> None:
        await self._call("SET", self._key("record", name), value, "PX", max(int(ttl * 1000), 1))

    @reachable
    async def get_record(self, name: str) -> str | None:
        value: str | None = await self._call("GET", self._key("record", name))
        return value

    @reachable
    async def count_record(self, name: str, window: float) -> int:
        window_ms = max(int(window * 1000), 1)
        return int(await self._run("count", [self._key("record", name)], [window_ms]))

    @reachable
    async def delete_record(self, name: str) -> None:
        await self._call("DEL", self._key("record", name))

    # Outbox -----------------------------------------------------------------------------
    outbox_survives = True

    @reachable
    async def outbox_append(self, lane: str, entry: str, cap: int) -> bool:
        keys = self._outbox_keys(lane)
        return bool(await self._run("outbox_append", keys, [entry, cap]))

    @reachable
    async def outbox_lease(self, lane: str, holder: str, ttl: float) -> bool:
        keys, ttl_ms = self._outbox_keys(lane), max(int(ttl * 1000), 1)
        return bool(await self._run("outbox_lease", keys, [holder, ttl_ms]))

    @reachable
    async def outbox_release(self, lane: str, holder: str) -> None:
        await self._run("outbox_release", self._outbox_keys(lane), [holder])

    @reachable
    async def outbox_head(self, lane: str) -> str | None:
        entry: str | None = await self._call("LINDEX", self._outbox_keys(lane)[0], 0)
        return entry

    @reachable
    async def outbox_done(self, lane: str, holder: str, entry: str) -> bool:
        keys = self._outbox_keys(lane)
        return bool(await self._run("outbox_done", keys, [holder, entry]))

    @reachable
    async def outbox_entries(self, lane: str) -> list[str]:
        entries: list[str] = await self._call("LRANGE", self._outbox_keys(lane)[0], 0, -1)
        return entries

    # Coordination -----------------------------------------------------------------------
    def turn(
        self, session_id: str, ttl: float, client_id: str | None = None
    ) -> AbstractAsyncContextManager[TurnStart | None]:
        return self._turns.hold(session_id, ttl, client_id)

    async def _begin_turn(
        self, session_id: str, client_id: str, token: str, lease: str
    ) -> tuple[str, str, list[Card]]:
        """For the turns: one ``begin.lua``, and what it says (see ``HeldTurns``)."""
        keys = [
            self._session_key("session", session_id),
            self._session_key("client_ids", session_id),
            self._turn_key(session_id),
            self._session_key("conversation", session_id),
            self._session_key("cards", session_id),
        ]
        reply, _ = await self._with_cards(
            "begin", session_id, keys, [client_id, token, lease, _OPEN_STATUSES]
        )
        if reply[0] != "held":
            return reply[0], "", []
        cards = [_decode_card(_decode_pairs(flat)) for flat in reply[2:]]
        return "held", reply[1], [card for card in cards if card is not None]

    async def _renew_turn(self, session_id: str, token: str, lease_ms: int) -> object:
        """For the turns: one ``renew.lua``, the lease of the session's turn."""
        return await self._run("renew", [self._turn_key(session_id)], [token, lease_ms])

    def subscribe(self, session_id: str, listener: Listener) -> Callable[[], None]:
        return self._news.subscribe(session_id, listener)

    async def _follow(self, session_id: str, follow: bool) -> None:
        """For the news listener: this instance in the session's listener set, or out."""
        await self._run(
            "follow",
            [self._session_key("session", session_id), self._session_key("listeners", session_id)],
            [self.instance, "1" if follow else ""],
        )
