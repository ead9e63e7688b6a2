"""The end-marker splitter of the SSH session (pure byte logic): output that
waited for a marker is kept when the marker never comes (a timeout)."""

from __future__ import annotations

from engine.connections.output import Capture
from engine.connections.ssh.session import _Marked

END = b"\nTOKEN0123 "


def marked(with_rc: bool = True) -> tuple[_Marked, Capture]:
    capture = Capture(limit=10_000)
    return _Marked(capture, END, with_rc=with_rc), capture


def test_the_marker_and_rc_are_cut_off() -> None:
    m, cap = marked()
    for piece in (b"hello", b"\nTOK", b"EN0123 ", b"7\n"):
        m.feed(piece)
    assert m.done and m.rc == 7 and cap.value() == b"hello"


def test_flush_keeps_the_last_words_of_a_step_that_never_ended() -> None:
    m, cap = marked()
    m.feed(b"last words")  # shorter than the kept tail
    assert cap.value() == b""  # still pending: it could have held a marker
    m.flush()
    assert cap.value() == b"last words"


def test_flush_drops_a_marker_that_came_only_in_part() -> None:
    m, cap = marked()
    m.feed(b"tail\n\nTOKEN01")
    m.flush()
    assert cap.value() == b"tail\n"


def test_flush_drops_a_whole_marker_waiting_for_its_rc() -> None:
    m, cap = marked()
    m.feed(b"out\nTOKEN0123 1")
    m.flush()
    assert cap.value() == b"out"
