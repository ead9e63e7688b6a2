"""Where output is cut (a kept head and tail, a kept file written before a
long line ends) no piece of a secret is left: masking needs the whole value,
so a piece must go with the rest of what is cut away."""

from __future__ import annotations

import re
from pathlib import Path

from engine.connections.output import Capture, KeptFile
from engine.redaction import Redactor

SECRET = "tok-Zq93-LongSecretValue"


def redactor() -> Redactor:
    r = Redactor()
    r.add(SECRET)
    return r


def test_partial_end_and_start_find_a_secret_cut_in_two() -> None:
    r = redactor()
    assert r.partial_end("abc tok-Zq9") == 4
    assert r.partial_end("abc tok-Zq93-LongSecretValue") == len("abc tok-Zq93-LongSecretValue")
    assert r.partial_end("abc t") == 4  # one letter may be a secret's first
    assert r.partial_end("abc x") == 5
    assert r.partial_start("etValue and on") == len("etValue")
    assert r.partial_start("and on") == 0
    # A form of the secret (here JSON-escaped) cut in two is found as well.
    r.add('pw"with-quote')
    assert r.partial_end('x pw\\"wi') == 2
    assert Redactor().partial_end("anything") == len("anything")


def test_a_kept_head_or_tail_cut_mid_line_keeps_no_piece_of_a_secret() -> None:
    head_cut = Capture(16384, redactor=redactor())
    head_cut.write(b"x" * 8182 + SECRET.encode() + b"y" * 200_000)  # cut at 8192
    kept = head_cut.value()
    assert SECRET[:4].encode() not in kept and b"omitted" in kept
    assert kept.startswith(b"x" * 8182)

    tail_cut = Capture(16384, redactor=redactor())
    tail_cut.write(b"x" * 200_000 + SECRET.encode() + b"y" * (8192 - 10))
    kept = tail_cut.value()
    assert SECRET[-4:].encode() not in kept
    assert kept.endswith(b"y" * (8192 - 10))
    # What was dropped with the piece is counted as left out.
    (dropped,) = re.findall(rb"\[\.\.\. (\d+) bytes of output omitted", kept)
    assert int(dropped) == tail_cut.size - 8192 - (8192 - 10)  # head of x, tail of y


def test_a_kept_file_breaks_a_long_line_before_a_secret_it_cuts(tmp_path: Path) -> None:
    path = tmp_path / "out"
    kept = KeptFile(path, redactor())
    # One line of 74 KB without an end, the secret where a fixed-size
    # overlap would have cut it.
    kept.write(b"x" * 70_000 + SECRET.encode() + b"y" * (4096 - 12))
    kept.write(b" tail\n")
    kept.close()
    assert path.read_bytes() == b"x" * 70_000 + b"***" + b"y" * (4096 - 12) + b" tail\n"
