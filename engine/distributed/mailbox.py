"""Mailboxes: the controller's and each worker's own queue on the broker.

Celery carries one task per host walk to its zone's queue; everything after
that (events, acknowledgements, prompts and their answers, heartbeats, stops)
goes between mailboxes, one per run on the controller and one per worker
process. On Redis a mailbox is a list (RPUSH / BLPOP: about 50 µs a message,
where kombu's polling costs ten times that); on any other broker URL
(`amqp://`, RabbitMQ) it is a kombu queue. Bodies are sealed text (seal.py).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Protocol

log = logging.getLogger("runbook.mailbox")

# A mailbox left behind (a process killed mid-run) is gone after a day.
LEFTOVER_SECONDS = 86400


class Mailbox(Protocol):
    name: str

    def send(self, to: str, body: str) -> None: ...

    def send_many(self, to: str, bodies: list[str]) -> None: ...

    def receive(self, timeout: float) -> str | None: ...

    def receive_burst(self, timeout: float) -> list[str]:
        """What has queued up (at least one), or [] after `timeout` seconds."""
        ...

    def close(self) -> None: ...


def open_mailbox(url: str, name: str) -> Mailbox:
    """The mailbox `name` on the broker at `url`, created empty."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisMailbox(url, name)
    return KombuMailbox(url, name)


def _text(body: bytes | str) -> str:
    return body.decode() if isinstance(body, bytes) else body


def _redis_key(name: str) -> str:
    return f"runbook:mailbox:{name}"


class RedisMailbox:
    """A Redis list: RPUSH to send; BLMPOP to wait and take what queued up
    (one round trip for a burst: 50 hosts ending a step together)."""

    BURST = 256

    def __init__(self, url: str, name: str) -> None:
        import redis

        self.name = name
        self._client = redis.Redis.from_url(url, socket_keepalive=True)
        # A separate connection for the blocking read: sends never wait behind it.
        self._reader = redis.Redis.from_url(url, socket_keepalive=True)
        self._key = _redis_key(name)
        self._client.delete(self._key)
        self._buffer: list[bytes | str] = []  # fetched, not yet received
        self._blmpop = True  # until the server says it has no BLMPOP
        self._push = self._client.register_script(
            "redis.call('RPUSH', KEYS[1], unpack(ARGV, 2)); redis.call('EXPIRE', KEYS[1], ARGV[1])"
        )

    def send(self, to: str, body: str) -> None:
        self.send_many(to, [body])

    def send_many(self, to: str, bodies: list[str]) -> None:
        # RPUSH and EXPIRE in one command (a pipeline costs twice the client
        # work); the expiry each time, since Redis deletes an emptied list.
        self._push(keys=[_redis_key(to)], args=[LEFTOVER_SECONDS, *bodies])

    def receive(self, timeout: float) -> str | None:
        if not self._buffer:
            self._buffer = self._fetch(timeout)
            if not self._buffer:
                return None
        return _text(self._buffer.pop(0))

    def receive_burst(self, timeout: float) -> list[str]:
        got, self._buffer = self._buffer or self._fetch(timeout), []
        return [_text(body) for body in got]

    def _fetch(self, timeout: float) -> list[bytes | str]:
        from redis.exceptions import ResponseError

        if self._blmpop:
            try:  # Redis 7: wait and take a burst in one command
                got = self._reader.blmpop(timeout, 1, self._key, direction="LEFT", count=self.BURST)
            except ResponseError:  # an older Redis: BLPOP, then LPOP the rest
                self._blmpop = False
            else:
                values = got[1] if got else []
                return list(values) if isinstance(values, list) else []
        first = self._reader.blpop([self._key], timeout=timeout)
        if first is None:
            return []
        more = self._reader.lpop(self._key, self.BURST)
        return [first[1], *(more if isinstance(more, list) else [])]

    def close(self) -> None:
        try:
            self._client.delete(self._key)
        finally:
            self._client.close()
            self._reader.close()


class KombuMailbox:
    """A queue on an AMQP (or other kombu) broker, reached by the default exchange."""

    def __init__(self, url: str, name: str) -> None:
        from kombu.connection import Connection
        from kombu.entity import Queue

        self.name = name
        self._url = url
        self._lock = threading.Lock()  # kombu connections are not shared between threads
        self._send_conn = Connection(url)
        self._producer: Any = None
        self._recv_conn = Connection(url)
        queue = Queue(
            name,
            routing_key=name,
            durable=False,
            auto_delete=False,
            expires=LEFTOVER_SECONDS,
            no_ack=True,
        )
        self._queue = self._recv_conn.SimpleQueue(queue, no_ack=True)
        self._queue.clear()

    def send_many(self, to: str, bodies: list[str]) -> None:
        for body in bodies:
            self.send(to, body)

    def send(self, to: str, body: str) -> None:
        with self._lock:
            if self._producer is None:
                self._producer = self._send_conn.Producer()
            self._producer.publish(body, exchange="", routing_key=to, serializer="json", retry=True)

    def receive(self, timeout: float) -> str | None:
        from queue import Empty

        try:
            message = self._queue.get(block=True, timeout=timeout)
        except Empty:
            return None
        payload: str = message.payload
        return payload

    def receive_burst(self, timeout: float) -> list[str]:
        from queue import Empty

        first = self.receive(timeout)
        if first is None:
            return []
        got = [first]
        while len(got) < RedisMailbox.BURST:
            try:
                got.append(self._queue.get(block=False).payload)
            except Empty:
                break
        return got

    def close(self) -> None:
        self._queue.close()  # cancels the consumer first: deleting under it warns
        try:
            with self._lock:
                self._queue.queue.bind(self._send_conn.default_channel).delete()
        except Exception:
            pass  # the queue expires on its own
        finally:
            self._recv_conn.release()
            self._send_conn.release()


class Outbox:
    """Sends from one thread, what queued up for one mailbox in one command.

    Hosts that end a step together answer together: a thousand replies to two
    workers become a few RPUSHes instead of a thousand (the client's work per
    command, not the bytes, is what costs). Order is kept per destination.
    """

    BURST = 512

    def __init__(self, mailbox: Mailbox, name: str) -> None:
        self.mailbox = mailbox
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def post(self, to: str, body: str) -> None:
        self._queue.put((to, body))

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch = [first]
            while first is not None and len(batch) < self.BURST:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            by_destination: dict[str, list[str]] = {}
            for item in batch:
                if item is not None:
                    by_destination.setdefault(item[0], []).append(item[1])
            for to, bodies in by_destination.items():
                self._deliver(to, bodies)
            if None in batch:
                return

    def _deliver(self, to: str, bodies: list[str]) -> None:
        for attempt in range(3):
            try:
                self.mailbox.send_many(to, bodies)
                return
            except Exception as exc:  # the broker hiccuped: again, then give up loudly
                log.warning("sending %d message(s) to %s: %s", len(bodies), to, exc)
                time.sleep(0.2 * (attempt + 1))
        log.error("dropped %d message(s) to %s: the broker does not answer", len(bodies), to)
