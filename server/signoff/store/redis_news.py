"""The Redis store's news listener: how an instance hears that a session changed elsewhere.

Pub/sub only wakes the instances that hold a session's sockets: each follows the sessions
it has listeners for (their channels, and its id in their listener sets), so a writer
announces frames only to them. News carries no data (a listener reads the frames from the
stream), so news missed while the connection was down costs one read per followed session
once it is back. On a Redis Cluster it comes through one node, the next when that stops
answering. The store owns the listener and hands it its names, id and ``follow`` script.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster

from signoff.store.base import Listener, Listeners, News
from signoff.store.redis_outage import UNAVAILABLE

log = logging.getLogger("signoff.store")


class NewsListener:
    def __init__(
        self,
        redis: Redis | RedisCluster,
        nodes: Sequence[Redis],
        *,
        channel: Callable[[str], str],
        own_channel: str,
        instance: str,
        follow: Callable[[str, bool], Awaitable[object]],
        closing: Callable[[], bool],
    ) -> None:
        """``nodes``: for a cluster, a plain client per node to hear news through, tried in
        turn and closed with the listener; without, news comes through ``redis``.
        ``channel``: a session's news channel (with ``""``, the prefix they share);
        ``own_channel``: the instance's own, subscribed from the start. ``follow``: says in
        a session's listener set that this instance follows it (or not). ``closing``: the
        store is closing."""
        self._redis = redis
        self._clients = list(nodes)
        self._node = 0
        self._channel = channel
        self._own_channel = own_channel
        self._instance = instance
        self._follow_session = follow
        self._closing = closing
        self._listeners = Listeners(changed=self._mark)
        self._pubsub: PubSub | None = None
        self._subscribed: set[str] = set()
        self._dirty: set[str] = set()
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Subscribe, then listen and follow; raises one of ``UNAVAILABLE`` when no node answers."""
        self._pubsub = await self._subscribe_news([])
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._listen()), loop.create_task(self._reconcile())]

    async def close(self) -> None:
        self._changed.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._pubsub is not None:
            with contextlib.suppress(*UNAVAILABLE):
                await self._pubsub.aclose()
            self._pubsub = None
        for client in self._clients:
            await client.aclose()

    def subscribe(self, session_id: str, listener: Listener) -> Callable[[], None]:
        return self._listeners.add(session_id, listener)

    def _mark(self, session_id: str) -> None:
        """The session's listeners here changed: (un)follow it at the next reconcile."""
        self._dirty.add(session_id)
        self._changed.set()

    def notify(self, session_id: str, news: News) -> None:
        self._listeners.notify(session_id, news)

    def _news_pubsub(self) -> PubSub:
        """A subscription connection: the store's own, or the current cluster node's."""
        if not self._clients:
            assert isinstance(self._redis, Redis)
            return self._redis.pubsub(ignore_subscribe_messages=True)
        client = self._clients[self._node % len(self._clients)]
        return client.pubsub(ignore_subscribe_messages=True)

    async def _subscribe_news(self, channels: list[str]) -> PubSub:
        """A subscription to ``channels`` through the current node, or else the next ones
        in turn. Listening needs a channel from the start: this instance's own serves."""
        channels = [self._own_channel, *channels]
        for _ in range(len(self._clients) - 1):
            try:
                return await self._pubsub_on_node(channels)
            except UNAVAILABLE:
                self._node += 1
        return await self._pubsub_on_node(channels)

    async def _pubsub_on_node(self, channels: list[str]) -> PubSub:
        pubsub = self._news_pubsub()
        try:
            await pubsub.subscribe(*channels)
        except UNAVAILABLE:
            with contextlib.suppress(*UNAVAILABLE):
                await pubsub.aclose()
            raise
        return pubsub

    async def _reconcile(self) -> None:
        """Follow the sessions that have listeners here, in batches, one command each way."""
        assert self._pubsub is not None
        # Not only cancelled: redis-py may swallow a cancellation that lands mid-command.
        while not self._closing():
            await self._changed.wait()
            self._changed.clear()
            dirty, self._dirty = self._dirty, set()
            wanted = [s for s in dirty if s in self._listeners and s not in self._subscribed]
            unwanted = [s for s in dirty if s not in self._listeners and s in self._subscribed]
            try:
                if wanted:
                    await self._pubsub.subscribe(*(self._channel(s) for s in wanted))
                    await self._follow(wanted, True)
                    self._subscribed.update(wanted)
                    # Frames written elsewhere before the subscription took hold.
                    for session_id in wanted:
                        self.notify(session_id, News("frames"))
                if unwanted:
                    await self._pubsub.unsubscribe(*(self._channel(s) for s in unwanted))
                    await self._follow(unwanted, False)
                    self._subscribed.difference_update(unwanted)
            except UNAVAILABLE as exc:
                log.warning("cannot follow sessions in Redis (%s); retrying", exc)
                self._dirty |= dirty
                await asyncio.sleep(0.5)
                self._changed.set()

    async def _follow(self, session_ids: list[str], follow: bool) -> None:
        """Say in the sessions' listener sets that this instance follows them (or not), so
        frames written elsewhere are announced to it, and only to instances that listen."""
        await asyncio.gather(
            *(self._follow_session(session_id, follow) for session_id in session_ids)
        )

    async def _next_news_node(self) -> None:
        """The cluster node news came through stopped answering: listen through the next
        one, to every channel this instance follows."""
        self._node += 1
        following = set(self._listeners.sessions())
        try:
            pubsub = await self._subscribe_news([self._channel(s) for s in following])
        except UNAVAILABLE:
            return  # none answers now; the next failure tries again
        old, self._pubsub, self._subscribed = self._pubsub, pubsub, following
        if old is not None:
            with contextlib.suppress(*UNAVAILABLE):
                await old.aclose()

    async def _listen(self) -> None:
        assert self._pubsub is not None
        news = self._channel("")
        broken = False
        while not self._closing():  # as in _reconcile
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except UNAVAILABLE as exc:
                if not broken:
                    log.warning("lost the Redis news connection (%s); reconnecting", exc)
                broken = True
                await asyncio.sleep(0.5)
                if len(self._clients) > 1:
                    await self._next_news_node()
                continue
            if broken:
                # Back, and subscribed again: whatever happened meanwhile is in the streams.
                broken = False
                log.info("Redis news connection is back")
                for session_id in self._listeners.sessions():
                    self.notify(session_id, News("frames"))
            if message is None or message.get("type") != "message":
                continue
            instance, _, event = message["data"].partition(":")
            if instance != self._instance and message["channel"].startswith(news):
                self.notify(message["channel"][len(news) :], News(event))
