"""Where an inventory comes from: one or more sources, read as Ansible reads them,
merged into one Spec for the builder (loader.py).

- Several sources (`-i a -i b`, or `a,b` as in $ANSIBLE_INVENTORY) merge in
  order: groups and hosts add up, and a later source's vars win.
- A directory is every file in it (sorted, subdirectories too), skipping what
  Ansible skips: hidden files, group_vars/, host_vars/, vars_plugins/, and the
  extensions in IGNORED_EXTENSIONS.
- An executable program is a dynamic inventory, run with `--list`
  (ansible_script.py); a JSON file shaped like its output is read the same way.
- Anything else is told apart by content: INI, Ansible YAML or the native format.
- group_vars/ and host_vars/ beside each source (ansible_vars.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from engine.errors import Location

from .model import Spec, VarFiles

# Ansible's INVENTORY_IGNORE_EXTS default (REJECT_EXTS + .orig, .cfg, .retry).
IGNORED_EXTENSIONS = (
    ".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg", ".retry",
)  # fmt: skip
_IGNORED_NAMES = re.compile(r"^\.|^host_vars$|^group_vars$|^vars_plugins$")
_INI_SECTION = re.compile(r"^\s*\[[^\]\s]+\]\s*(?:[#;].*)?$", re.M)

Sources = str | Path | Sequence[str | Path]


def split_sources(value: Sources) -> list[str]:
    """`a,b` → [a, b] (Ansible's $ANSIBLE_INVENTORY habit), unless `a,b` is itself a file."""
    if isinstance(value, str | Path):
        text = str(value)
        if "," not in text or os.path.exists(text):
            return [text]
        return [part.strip() for part in text.split(",") if part.strip()]
    return [part for item in value for part in split_sources(item)]


def source_name(paths: list[str]) -> str:
    """How the inventory is named in history and output. Several sources are
    named by absolute paths, so a resume from elsewhere reads the same files."""
    if len(paths) == 1:
        return paths[0]
    return ",".join(str(Path(p).resolve()) for p in paths)


def read_sources(paths: list[str]) -> tuple[Spec, str]:
    """The merged Spec of every source, and a digest of everything read."""
    read: list[tuple[str, bytes]] = []
    specs: list[Spec] = []
    for path in paths:
        specs.extend(_read_source(Path(path), read))
    spec = merge_specs(specs, source_name(paths))
    if spec.format != "native":
        _add_var_files(spec, paths, read)
    return spec, _digest(read)


def _add_var_files(spec: Spec, paths: list[str], read: list[tuple[str, bytes]]) -> None:
    from .ansible_vars import load_var_files, vars_base

    groups = list(dict.fromkeys(["all", *spec.groups, "ungrouped"]))
    by_base: dict[Path, VarFiles] = {}
    for path in paths:
        base = vars_base(Path(path))
        if base not in by_base:
            files: list[Path] = []
            by_base[base] = load_var_files(spec, base, groups, list(spec.hosts), files)
            read.extend((str(f), _bytes(f)) for f in files)
        spec.var_files.append(by_base[base])


def _bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _digest(read: list[tuple[str, bytes]]) -> str:
    if len(read) == 1:  # one plain file: the digest runs recorded before stay valid
        return hashlib.sha256(read[0][1]).hexdigest()
    total = hashlib.sha256()
    for name, raw in read:
        total.update(name.encode() + b"\0" + hashlib.sha256(raw).digest())
    return total.hexdigest()


def _read_source(path: Path, read: list[tuple[str, bytes]]) -> list[Spec]:
    if path.is_dir():
        specs: list[Spec] = []
        for entry in sorted(os.listdir(path)):
            if _IGNORED_NAMES.search(entry) or entry.endswith(IGNORED_EXTENSIONS):
                continue
            specs.extend(_read_source(path / entry, read))
        if not specs:  # Ansible only warns; a run on no hosts is never what was meant
            return [_unreadable(str(path), "the inventory directory holds no inventory file")]
        return specs
    return [_read_file(path, read)]


def _read_file(path: Path, read: list[tuple[str, bytes]]) -> Spec:
    from .ansible_script import is_script, looks_like_list_json, parse_list_json, read_script

    file = str(path)
    if is_script(path):
        spec, raw = read_script(path)
        read.append((file, raw))
        return spec
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except OSError as exc:
        return _unreadable(file, f"cannot read inventory: {exc.strerror}", _hint(file))
    except UnicodeDecodeError as exc:
        return _unreadable(file, f"the inventory is not UTF-8 text ({exc.reason})")
    read.append((file, raw))
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        if looks_like_list_json(data):
            spec = Spec(file, text, "ansible-json")
            parse_list_json(spec, data)
            return spec
    return parse_spec(file, text)


def _hint(file: str) -> str:
    if not os.path.exists(file) and os.sep not in file and "." not in file:
        return "Ansible's host lists (`-i web1,web2,`) are not read: write the hosts in a file"
    return ""


def _unreadable(file: str, message: str, hint: str = "") -> Spec:
    spec = Spec(file, "", "ansible-ini")
    spec.problem(Location(file), message, hint)
    return spec


def parse_spec(file: str, text: str) -> Spec:
    """Tell a static file's format apart by content and parse it."""
    from engine.format.source import load_yaml

    from .ansible import looks_like_ansible_yaml, parse_ansible_yaml, parse_ini
    from .native import TOP_KEYS, parse_native

    if file.endswith((".ini", ".cfg")):
        return parse_ini(file, text)
    doc = load_yaml(text, file)
    if isinstance(doc.data, dict) and not (doc.problems and _INI_SECTION.search(text)):
        spec = parse_ansible_yaml(doc) if looks_like_ansible_yaml(doc.data, TOP_KEYS) else None
        spec = spec or parse_native(doc)
        spec.problems[:0] = doc.problems
        return spec
    if _INI_SECTION.search(text) or isinstance(doc.data, str):
        return parse_ini(file, text)
    spec = parse_native(doc)
    spec.problems[:0] = doc.problems
    return spec


def merge_specs(specs: list[Spec], name: str) -> Spec:
    """Sources in order, as Ansible adds them to one inventory: later vars win."""
    if len(specs) == 1:
        spec = specs[0]
        spec.texts.setdefault(spec.file, spec.text)
        return spec
    formats = list(dict.fromkeys(s.format for s in specs))
    merged = Spec(name, "", "+".join(formats) or "ansible-ini")
    for spec in specs:
        merged.texts[spec.file] = spec.text
        merged.texts.update(spec.texts)
        merged.problems.extend(spec.problems)
        if spec.format == "native":
            merged.problem(
                Location(spec.file),
                "an inventory in the native format cannot be merged with other sources",
                "give it alone with -i, or write the others in the native format into it",
            )
            continue
        _merge_into(merged, spec)
    return merged


def _merge_into(merged: Spec, spec: Spec) -> None:
    merged.vars.update(spec.vars)
    for group in spec.groups.values():
        into = merged.group(group.name, group.where)
        into.vars.update(group.vars)
        if group.priority != 100:
            into.priority = group.priority
        into.hosts.extend(h for h in group.hosts if h not in into.hosts)
        for child in group.children:
            if child not in into.children:
                into.children.append(child)
                into.child_where[child] = group.child_where.get(child, group.where)
    for host in spec.hosts.values():
        merged.host(host.name, host.where).vars.update(host.vars)
