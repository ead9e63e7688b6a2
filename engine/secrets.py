"""`secret(name)` lookup and the redaction set.

A secret's value is registered with the run's Redactor the moment it is read,
and every output channel (console, JSON, reports, history, error messages)
passes what it writes through that Redactor. Secrets therefore never need to be
known in advance: whatever a template actually used is what gets hidden.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .errors import SecretError

MASK = "***"


class Redactor:
    """Replaces every registered secret value by `***`, in any nested data."""

    def __init__(self) -> None:
        self._values: list[str] = []
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        if not value or len(value) < 3:
            # Masking "a" or "1" everywhere would shred the output for nothing;
            # such values are not secrets worth the name.
            return
        with self._lock:
            if value not in self._values:
                # Longest first, so a secret that contains another is masked whole.
                self._values = sorted([*self._values, value], key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._values)

    def text(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def __call__(self, data: Any) -> Any:
        if not self._values:
            return data
        if isinstance(data, str):
            return self.text(data)
        if isinstance(data, bytes):
            return self.text(data.decode("utf-8", "replace"))
        if isinstance(data, Mapping):
            return {k: self(v) for k, v in data.items()}
        if isinstance(data, list | tuple):
            return [self(v) for v in data]
        return data


class Secrets:
    """Looks secrets up in a secrets file first, then in the environment."""

    def __init__(
        self,
        redactor: Redactor,
        file: str | Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.redactor = redactor
        self._environ = os.environ if environ is None else environ
        self._file_values: dict[str, str] = {}
        if file is not None:
            self._file_values = load_secrets_file(Path(file))

    def get(self, name: str) -> str:
        if name in self._file_values:
            value = self._file_values[name]
        elif name in self._environ:
            value = self._environ[name]
        else:
            raise SecretError(
                f"secret {name!r} is not set: export {name}=... or add it to the --secrets file"
            )
        self.redactor.add(value)
        return value

    def __call__(self, name: str) -> str:
        return self.get(name)


def load_secrets_file(path: Path) -> dict[str, str]:
    """Read a YAML mapping of secrets, refusing files others could read."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise SecretError(f"{path}: cannot read secrets file: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretError(
            f"{path}: secrets file is readable by group or others "
            f"(mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}"
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SecretError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SecretError(f"{path}: a secrets file is a mapping of NAME: value")
    return {str(k): str(v) for k, v in data.items()}
