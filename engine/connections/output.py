"""A command's output, bounded in memory whatever the command prints.

Each stream keeps its first and its last `limit / 2` bytes; what lies between
is counted and dropped, and the kept text says so in one line where the cut
is. So a step that prints 200 MB costs the engine (and the run history) about
`limit` per stream, not 200 MB, and its start and end (where errors are) stay.
With `files` the whole stream is also written to disk as it comes, redacted
line by line, for the operator who asked to keep it (`runbook run --keep-output`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from engine.redaction import Redactor

DEFAULT_LIMIT = 1 << 20  # bytes kept per stream (stdout, stderr) of one attempt

# A cut moves to a line boundary when one is this near, so that no line (and
# no secret on it) is kept in part: redaction masks whole values only. With
# no line end that near, the cut is made mid-line and any piece of a secret
# at the cut is dropped too (Redactor.partial_end / partial_start).
_LINE_SLACK = 4096
# A line longer than this is written to a kept file unfinished, up to where
# a secret it ends in the middle of begins.
_LONGEST_LINE = 1 << 16

_NO_SECRETS = Redactor()


@dataclass(frozen=True)
class OutputSpec:
    """How much of a command's output to keep, and where the rest may go."""

    limit: int = DEFAULT_LIMIT
    files: tuple[Path, Path] | None = None  # the whole stdout and stderr, when kept
    # The run's secrets: masked in what `files` receive, and never kept in part
    # where the output is cut.
    redactor: Redactor = _NO_SECRETS

    def captures(self) -> tuple[Capture, Capture]:
        """A fresh Capture for stdout and one for stderr."""
        if self.files is None:
            return Capture(self.limit, redactor=self.redactor), Capture(
                self.limit, redactor=self.redactor
            )
        return (
            Capture(self.limit, KeptFile(self.files[0], self.redactor), self.redactor),
            Capture(self.limit, KeptFile(self.files[1], self.redactor), self.redactor),
        )


class Capture:
    """One stream: its head and tail in memory, its size counted."""

    def __init__(
        self,
        limit: int = DEFAULT_LIMIT,
        kept: KeptFile | None = None,
        redactor: Redactor = _NO_SECRETS,
    ) -> None:
        self.redactor = redactor
        self.half = max(limit // 2, 1)
        self.head = bytearray()
        self.tail = bytearray()
        self.size = 0  # bytes the stream carried in all
        self.kept = kept

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self.kept is not None:
            self.kept.write(data)
        room = self.half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > 2 * self.half:  # trim now and then, not on every write
                del self.tail[: len(self.tail) - self.half]

    @property
    def omitted(self) -> int:
        """Bytes of the stream that value() leaves out."""
        return self.size - len(self.value(marker=False))

    def value(self, marker: bool = True) -> bytes:
        """The stream as kept: whole when it fit, else head, a line saying
        how much was left out, and tail, both cut at line boundaries."""
        tail = self.tail[-self.half :] if len(self.tail) > self.half else self.tail
        if len(self.head) + len(tail) == self.size:
            return bytes(self.head + tail)
        head = _to_line_end(bytes(self.head), self.redactor)
        tail_b = _from_line_start(bytes(tail), self.redactor)
        if not marker:
            return head + tail_b
        dropped = self.size - len(head) - len(tail_b)
        return head + f"\n[... {dropped} bytes of output omitted ...]\n".encode() + tail_b

    def close(self) -> None:
        if self.kept is not None:
            self.kept.close()


def _to_line_end(head: bytes, redactor: Redactor) -> bytes:
    at = head.rfind(b"\n", max(0, len(head) - _LINE_SLACK))
    if at >= 0:
        return head[: at + 1]
    text = _text(head)
    return _bytes(text[: redactor.partial_end(text)])


def _from_line_start(tail: bytes, redactor: Redactor) -> bytes:
    at = tail.find(b"\n", 0, _LINE_SLACK)
    if at >= 0:
        return tail[at + 1 :]
    text = _text(tail)
    return _bytes(text[redactor.partial_start(text) :])


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class KeptFile:
    """The whole stream on disk, passed through `redact` a line at a time.

    Bytes that are not UTF-8 pass through unchanged (surrogateescape), so a
    binary stream is kept as it was, apart from masked secrets."""

    def __init__(self, path: Path, redactor: Redactor) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self.redactor = redactor
        self.pending = bytearray()
        self.stream: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed by close()
        path.chmod(0o600)

    def write(self, data: bytes) -> None:
        self.pending += data
        end = self.pending.rfind(b"\n") + 1
        if end == 0 and len(self.pending) > _LONGEST_LINE:
            # A line without end: write it up to where a secret it stops in
            # the middle of begins; that piece waits for the rest.
            text = _text(bytes(self.pending))
            end = len(_bytes(text[: self.redactor.partial_end(text)]))
        if end > 0:
            self._flush(bytes(self.pending[:end]))
            del self.pending[:end]

    def _flush(self, data: bytes) -> None:
        self.stream.write(_bytes(self.redactor.text(_text(data))))

    def close(self) -> None:
        if self.stream.closed:
            return
        if self.pending:
            self._flush(bytes(self.pending))
            self.pending.clear()
        self.stream.close()
