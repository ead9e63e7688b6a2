"""Files parsed once per version and shared: private keys, known_hosts, ssh config.

Every fork that connects asks for the same few files at the same moment. The
parse runs under the cache's lock, so they are parsed once, not once per fork
(in Python, under one GIL, 50 parses side by side take as long as 50 in a row:
~80 ms each for a 1,000-entry known_hosts). A file whose mtime or size changed
is parsed again; a parse that raises is not kept, so the next caller retries.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

T = TypeVar("T")

_cache: dict[tuple[Callable[[str], Any], str], tuple[tuple[int, int], Any]] = {}
_lock = threading.Lock()


def parsed(path: str | os.PathLike[str], parse: Callable[[str], T]) -> T:
    """`parse(path)`, from the cache while the file is unchanged.

    The file's OSError (missing, unreadable) and the parser's own errors reach
    the caller, which knows what they mean for it.
    """
    name = os.fspath(path)
    st = os.stat(name)
    stamp = (st.st_mtime_ns, st.st_size)
    key = (parse, name)
    with _lock:
        hit = _cache.get(key)
        if hit is not None and hit[0] == stamp:
            return cast(T, hit[1])  # stored by this same `parse`
        value = parse(name)
        _cache[key] = (stamp, value)
        return value


def clear() -> None:
    """Forget every parse (tests that count parses start from nothing)."""
    with _lock:
        _cache.clear()
