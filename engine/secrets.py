"""`secret(name)`: secrets from a `--secrets` file or the environment, or, for
a name with a backend's prefix (`vault:`, `aws:`, `sops:`), from that backend
(engine/secret_backends/).

A secret's value is registered with the run's Redactor (engine/redaction.py)
the moment it is read, and every output channel passes what it writes through
that Redactor: whatever a template actually used is what gets hidden.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from engine.secret_backends import Backends, parse_ref

from .errors import SecretError
from .redaction import Redactor, dsn_passwords, looks_secret

if TYPE_CHECKING:
    from .inventory.host import Host


class Secrets:
    """Looks secrets up in a backend a name's prefix names, else in a secrets
    file first, then in the environment."""

    def __init__(
        self,
        redactor: Redactor,
        file: str | Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.redactor = redactor
        self._environ = os.environ if environ is None else environ
        self._file_values: dict[str, str] = {}
        self._backends = Backends(redactor, self._environ)
        if file is not None:
            self._file_values = load_secrets_file(Path(file))
        # Every value of the file is a secret from the start: a step that prints
        # one before (or without) secret() reading it must not show it.
        for value in self._file_values.values():
            redactor.add(value)

    def environment(self) -> Mapping[str, str]:
        """What templates see as `env`: the process environment, where reading a
        variable whose name says it holds a secret (PASSWORD, SECRET, TOKEN, KEY,
        ...) makes its value one, as `secret()` would, and a connection string's
        password is learnt whatever the variable's name."""
        return _Environment(self._environ, self.redactor)

    def get(self, name: str) -> str:
        ref = parse_ref(name)
        if ref is not None:
            return self._backends.get(ref)  # registered with the redactor there
        if name in self._file_values:
            value = self._file_values[name]
        elif name in self._environ:
            value = self._environ[name]
        else:
            hint = " (a backend's prefix is vault:, aws: or sops:)" if ":" in name else ""
            raise SecretError(
                f"secret {name!r} is not set: export {name}=... or add it to the --secrets file"
                + hint
            )
        self.redactor.add(value)
        return value

    def __call__(self, name: str) -> str:
        return self.get(name)

    def password_for(self, host: Host) -> str | None:
        """A host's `password:`, rendered: literal, or a template such as
        "{{ secret('DB_PW') }}" (it sees secret(), env and the host). The value
        joins the redaction set. Raises SecretError or TemplateError."""
        if not host.password:
            return None
        from .templating import render_value

        context = {"secret": self, "env": os.environ, "host": host.template_value()}
        password = str(render_value(host.password, context))
        self.redactor.add(password)
        return password


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


class _Environment(Mapping[str, str]):
    """`env` in templates: os.environ, read-only, learning secret-named values."""

    def __init__(self, environ: Mapping[str, str], redactor: Redactor) -> None:
        self._environ = environ
        self._redactor = redactor

    def __getitem__(self, name: str) -> str:
        value = self._environ[name]
        if looks_secret(name):
            self._redactor.add(value)
        for password in dsn_passwords(value):  # DATABASE_URL=postgresql://u:pw@db/x
            self._redactor.add(password)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._environ)

    def __len__(self) -> int:
        return len(self._environ)
