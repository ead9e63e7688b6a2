"""group_vars/ and host_vars/ beside an inventory, found as Ansible's
host_group_vars plugin finds them.

For each inventory source, the directory holding it (or the source itself when
it is a directory) may have `group_vars/` and `host_vars/`. For a group or host
NAME, the first of `NAME`, `NAME.yml`, `NAME.yaml`, `NAME.json` that exists is
read; when it is a directory, every file below it (sorted, recursively, hidden
files and `~` backups skipped, no extension or one of those three) is read,
later files winning. Empty files count for nothing. Where these vars rank
against the inventory's own: loader.py (`_merged_vars`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.errors import Location

from .model import Spec, VarFiles

EXTENSIONS = (".yml", ".yaml", ".json")


def vars_base(source: Path) -> Path:
    return source if source.is_dir() else source.parent


def load_var_files(
    spec: Spec, base: Path, groups: Iterable[str], hosts: Iterable[str], read: list[Path]
) -> VarFiles:
    """The vars of every group and host that has files under `base`; each file
    read is appended to `read` (for the inventory's digest)."""
    found = VarFiles()
    for subdir, names, into in (
        ("group_vars", groups, found.groups),
        ("host_vars", hosts, found.hosts),
    ):
        where = base / subdir
        if not where.is_dir():
            continue
        for name in names:
            if not name or name.startswith(os.sep) or os.sep in name:
                continue  # Ansible skips such names too; a path is no file name
            merged: dict[str, Any] = {}
            for file in find_vars_files(where, name):
                read.append(file)
                merged.update(_read_vars(spec, file))
            if merged:
                into[name] = merged
    return found


def find_vars_files(where: Path, name: str) -> list[Path]:
    for ext in ("", *EXTENSIONS):
        path = where / f"{name}{ext}"
        if path.is_dir():
            return _dir_files(path)
        if path.exists():
            return [path]
    return []


def _dir_files(path: Path) -> list[Path]:
    out: list[Path] = []
    for entry in sorted(path.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or entry.name.endswith("~"):
            continue
        if entry.is_dir() and not entry.suffix:
            out.extend(_dir_files(entry))
        elif entry.is_file() and (not entry.suffix or entry.suffix in EXTENSIONS):
            out.append(entry)
    return out


def _read_vars(spec: Spec, file: Path) -> dict[str, Any]:
    from engine.format.source import load_yaml

    name = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        spec.problem(Location(name), f"cannot read vars file: {reason}")
        return {}
    spec.texts[name] = text
    if text.lstrip().startswith("$ANSIBLE_VAULT"):
        spec.problem(
            Location(name, 1, 1),
            "this vars file is ansible-vault encrypted, which the engine cannot read",
            "decrypt it (ansible-vault decrypt) or keep the secrets in --secrets / secret()",
        )
        return {}
    doc = load_yaml(text, name)
    if doc.problems:
        spec.problems.extend(doc.problems)
        return {}
    if doc.data is None:
        return {}
    if not isinstance(doc.data, dict):
        spec.problem(
            Location(name, 1, 1),
            f"a vars file must hold a mapping of names to values, not {type(doc.data).__name__}",
        )
        return {}
    return {str(k): v for k, v in doc.data.items()}
