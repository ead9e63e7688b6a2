"""The streams an S3 transfer reads: counted, bounded by the step's timeout and
the operator's second Ctrl-C, and in whole parts (s3transfer takes one read as
one part; S3 rejects short parts).
"""

from __future__ import annotations

import re
import threading
import time
from typing import TYPE_CHECKING

from engine.errors import ServiceError, StepTimeout

if TYPE_CHECKING:
    from engine.connections.base import Readable

_SIZE = re.compile(r"^\s*(\d+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"k": 10, "m": 20, "g": 30}


def parse_size(value: int | str) -> int:
    """16777216, "16MiB", "16M" → bytes (binary units; 1 MB is 1 MiB here)."""
    if isinstance(value, int):
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a size: use a number of bytes or e.g. 64MiB")
    unit = (match[2] or "b").lower()[0]
    return int(match[1]) << _SIZE_UNITS.get(unit, 0)


class Deadline:
    """A whole transfer's time limit, checked between reads: botocore's own
    timeouts bound each socket operation, not the transfer. `cancelled` is the
    operator's second Ctrl-C: the transfer stops at its next read (a part, or a
    chunk of a download), and s3transfer aborts the multipart upload. A read
    blocked on a source that stopped producing is not interrupted: that waits for
    the source, as the deadline does."""

    def __init__(
        self,
        timeout: float | None,
        what: str,
        cancelled: threading.Event | None = None,
        where: str = "",
    ) -> None:
        self.timeout = timeout
        self.what = what
        self.where = where
        self.at = time.monotonic() + timeout if timeout else None
        self.cancelled = cancelled

    def check(self) -> None:
        if self.cancelled is not None and self.cancelled.is_set():
            where = f" {self.where}" if self.where else ""
            raise ServiceError(
                "s3", f"{self.what}{where}: the run was interrupted (Ctrl-C)", code="cancelled"
            )
        if self.at is not None and time.monotonic() > self.at:
            raise StepTimeout(f"s3 {self.what}: timed out after {self.timeout:g}s")


class Reader:
    """A read-only, unseekable view of a stream: counts bytes, enforces the deadline.

    Unseekable on purpose: boto3 then reads one part at a time into a bounded
    number of buffers, instead of assuming it may seek around a host file.
    """

    def __init__(self, stream: Readable, deadline: Deadline) -> None:
        self._stream = stream
        self._deadline = deadline
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes, short only at the end of the stream.

        s3transfer takes one read as one whole part; a pipe or channel that returns
        short reads would otherwise produce undersized parts that S3 rejects.
        """
        self._deadline.check()
        data = self._stream.read(size)
        if size is not None and size > 0 and data and len(data) < size:
            pieces = [data]
            got = len(data)
            while got < size:
                self._deadline.check()
                more = self._stream.read(size - got)
                if not more:
                    break
                pieces.append(more)
                got += len(more)
            data = b"".join(pieces)
        self.count += len(data)
        return data
