"""Secrets kept outside the environment: `secret('vault:...')`, `secret('aws:...')`
and `secret('sops:...')` (docs/format.md, section 9).

One `Backends` per run. Each document (a Vault path, an AWS secret, a SOPS
file) is fetched once, by whichever host's thread asks first, while the others
wait for it; a failure is kept too, so 500 hosts make one request to a Vault
that refuses, not 500. Every value is registered with the run's Redactor
before it is returned, so no output can show it.

Each backend's module (and its library) is imported on its first reference.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.errors import SecretError
from engine.redaction import Redactor

from .refs import FetchError, SecretRef, as_text, leaves, parse_ref, pick

__all__ = ["Backends", "SecretRef", "parse_ref"]


class Reader(Protocol):
    """One backend: fetches the document a reference names (raises FetchError)."""

    def read(self, ref: SecretRef) -> Any: ...


@dataclass
class _Slot:
    """One document's fetch: done once, under its own lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    done: bool = False
    value: Any = None
    error: str = ""


class Backends:
    """A run's secret backends, their clients and what they returned."""

    def __init__(
        self,
        redactor: Redactor,
        environ: Mapping[str, str],
        readers: Mapping[str, Reader] | None = None,
    ) -> None:
        self._redactor = redactor
        self._environ = environ
        self._lock = threading.Lock()
        self._slots: dict[tuple[str, str, str], _Slot] = {}
        self._readers: dict[str, Reader] = dict(readers or {})  # given: the unit tests'

    def get(self, ref: SecretRef) -> str:
        """The value `ref` names, registered with the redactor. Raises SecretError
        naming the reference, the backend and the cause (never the value)."""
        document = self._document(ref)
        try:
            if ref.key:
                value = as_text(pick(_structured(document), ref.key), ref.key)
                self._redactor.add(value)
                return value
            return self._whole(document)
        except FetchError as exc:
            raise SecretError(f"secret {ref.text!r}: {exc}") from None

    def _whole(self, document: Any) -> str:
        """A reference without #KEY (aws: only): the secret string as stored.
        Its JSON fields become secrets too: the template may pick them itself."""
        text = str(document)
        self._redactor.add(text)
        try:
            parsed = json.loads(text)
        except ValueError:
            return text
        for leaf in leaves(parsed):
            self._redactor.add(leaf)
        return text

    def _document(self, ref: SecretRef) -> Any:
        with self._lock:
            slot = self._slots.setdefault(ref.document, _Slot())
        with slot.lock:  # the other hosts asking for this document wait here
            if not slot.done:
                try:
                    slot.value = self._reader(ref.backend).read(ref)
                except FetchError as exc:
                    slot.error = str(exc)
                slot.done = True
        if slot.error:
            raise SecretError(f"secret {ref.text!r}: {slot.error}")
        return slot.value

    def _reader(self, backend: str) -> Reader:
        with self._lock:
            if backend not in self._readers:
                self._readers[backend] = _new_reader(backend, self._redactor, self._environ)
            return self._readers[backend]


def _new_reader(backend: str, redactor: Redactor, environ: Mapping[str, str]) -> Reader:
    """The backend's reader; its module (and library) is imported now, not before."""
    if backend == "vault":
        from .vault import VaultReader

        return VaultReader(redactor, environ)
    if backend == "aws":
        from .aws import AwsReader

        return AwsReader(redactor, environ)
    from .sops import SopsReader

    return SopsReader(redactor, environ)


def _structured(document: Any) -> Any:
    """An AWS secret string is JSON when a key is picked from it."""
    if not isinstance(document, str):
        return document
    try:
        return json.loads(document)
    except ValueError:
        raise FetchError(
            "the secret is not JSON, so it has no keys: drop the #KEY to get it whole"
        ) from None
