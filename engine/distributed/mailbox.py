"""Mailboxes: the controller's and each worker's own queue on the broker.

Celery carries one task per host walk to its zone's queue; everything after
that (events, acknowledgements, prompts and their answers, heartbeats, stops)
goes between mailboxes, one per run on the controller and one per worker
process. On Redis a mailbox is a list (RPUSH / BLPOP: about 50 µs a message,
where kombu's polling costs ten times that); on any other broker URL
(`amqp://`, RabbitMQ) it is a kombu queue. Bodies are sealed text (seal.py).
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

# A mailbox left behind (a process killed mid-run) is gone after a day.
LEFTOVER_SECONDS = 86400


class Mailbox(Protocol):
    name: str

    def send(self, to: str, body: str) -> None: ...

    def receive(self, timeout: float) -> str | None: ...

    def close(self) -> None: ...


def open_mailbox(url: str, name: str) -> Mailbox:
    """The mailbox `name` on the broker at `url`, created empty."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisMailbox(url, name)
    return KombuMailbox(url, name)


def _redis_key(name: str) -> str:
    return f"runbook:mailbox:{name}"


class RedisMailbox:
    """A Redis list: RPUSH to send, BLPOP to wait, then LPOP of what else queued
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
        self._buffer: list[bytes | str] = []

    def send(self, to: str, body: str) -> None:
        key = _redis_key(to)
        pipe = self._client.pipeline(transaction=False)  # one round trip for both
        pipe.rpush(key, body)
        pipe.expire(key, LEFTOVER_SECONDS)  # each time: an emptied list is deleted
        pipe.execute()

    def receive(self, timeout: float) -> str | None:
        if not self._buffer:
            got = self._reader.blpop([self._key], timeout=timeout)
            if got is None:
                return None
            self._buffer.append(got[1])
            more = self._reader.lpop(self._key, self.BURST)
            if isinstance(more, list):
                self._buffer.extend(more)
        body = self._buffer.pop(0)
        return body.decode() if isinstance(body, bytes) else str(body)

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
