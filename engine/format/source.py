"""YAML → plain Python data, remembering where every key and value came from.

Errors must point at file:line:column with the offending line and a caret, so
the loaders keep a map from a data path (`("steps", 3, "sql", "query")`) to the
position of that value in the file. Duplicate keys, which PyYAML silently
accepts (the last one wins), are reported as problems here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.errors import Location, Problem

# The C loader is ~10x faster; PyYAML built without libyaml has only the Python one.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

PathKey = tuple[str | int, ...]


@dataclass
class YamlDoc:
    file: str
    text: str
    data: Any
    # path → (line, column) of the value; path + ("<key>",) → the key itself
    positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def location(self, path: PathKey) -> Location:
        """The position of `path`, or of its nearest ancestor that has one."""
        probe = tuple(path)
        while probe:
            if probe in self.positions:
                line, col = self.positions[probe]
                return Location(self.file, line, col)
            probe = probe[:-1]
        line, col = self.positions.get((), (1, 1))
        return Location(self.file, line, col)

    def key_location(self, path: PathKey) -> Location:
        """The position of the key that holds `path` (for unknown-key errors)."""
        key = (*path, "<key>")
        if key in self.positions:
            line, col = self.positions[key]
            return Location(self.file, line, col)
        return self.location(path)

    def at_mark(self, mark: Any, message: str) -> Problem:
        """A problem at a YAML mark (0-based line and column)."""
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        location = Location(self.file, line, column)
        return Problem(message, location, snippet=snippet(self.text, line, column))

    def problem(self, path: PathKey, message: str, hint: str = "", key: bool = False) -> Problem:
        loc = self.key_location(path) if key else self.location(path)
        return Problem(
            message=message,
            location=loc,
            path=format_path(path),
            hint=hint,
            snippet=snippet(self.text, loc.line, loc.column),
        )


def format_path(path: PathKey) -> str:
    """("steps", 3, "sql", "query") → "steps[3].sql.query"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def snippet(text: str, line: int, column: int, context: int = 1) -> str:
    """The lines around `line`, numbered, with a caret under `column`."""
    if line <= 0:
        return ""
    lines = text.splitlines()
    if line > len(lines):
        return ""
    first = max(1, line - context)
    width = len(str(line))
    out = []
    for n in range(first, line + 1):
        out.append(f"  {n:>{width}} | {lines[n - 1]}")
    out.append(f"  {'':>{width}} | {' ' * max(column - 1, 0)}^")
    return "\n".join(out)


def load_yaml_file(path: str | Path) -> YamlDoc:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        doc = YamlDoc(str(path), "", None)
        doc.problems.append(Problem(f"cannot read file: {exc.strerror}", Location(str(path))))
        return doc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _not_utf8(str(path), raw, exc)
    return load_yaml(text, str(path))


def _not_utf8(file: str, raw: bytes, exc: UnicodeDecodeError) -> YamlDoc:
    line = raw.count(b"\n", 0, exc.start) + 1
    column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
    shown = raw.decode("utf-8", "replace")
    doc = YamlDoc(file, shown, None)
    message = f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x} here)"
    doc.problems.append(
        Problem(message, Location(file, line, column), snippet=snippet(shown, line, column))
    )
    return doc


def load_yaml(text: str, file: str) -> YamlDoc:
    doc = YamlDoc(file, text, None)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            doc.data = None
            return doc
        doc.data = _Builder(loader, doc).build(node, ())
    except _Refused as exc:
        doc.data = None
        doc.problems.append(doc.at_mark(exc.mark, exc.message))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        past_end = mark is not None and mark.line >= len(text.splitlines())
        if past_end and exc.context_mark is not None:
            mark = exc.context_mark  # past the end of the file, where it started helps
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        message = f"YAML syntax error: {exc.problem or exc}"
        if exc.context:
            message += f" ({exc.context})"
        doc.problems.append(
            Problem(message, Location(file, line, col), snippet=snippet(text, line, col))
        )
    except yaml.YAMLError as exc:
        doc.problems.append(Problem(f"YAML error: {exc}", Location(file)))
    finally:
        loader.dispose()
    return doc


# What a runbook file may expand to. Far beyond any real runbook; what stops a
# "billion laughs" of nested aliases (a few hundred bytes, gigabytes once
# expanded) and a nesting deep enough to exhaust Python's stack.
MAX_DEPTH = 64
MAX_VALUES = 100_000


class _Refused(Exception):
    """The file cannot be read as data: where, and why (becomes a Problem)."""

    def __init__(self, mark: Any, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


class _Builder:
    """Nodes → plain data, recording every value's position, within the limits."""

    def __init__(self, loader: Any, doc: YamlDoc) -> None:
        self.loader = loader
        self.doc = doc
        self.values = 0
        self.active: set[int] = set()  # nodes being built: an alias to one is a cycle

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            raise _Refused(
                node.start_mark,
                f"the file expands to more than {MAX_VALUES:,} values once its YAML "
                "aliases are expanded; refusing to read further",
            )
        if len(path) > MAX_DEPTH:
            raise _Refused(node.start_mark, f"nested more than {MAX_DEPTH} levels deep")
        if id(node) in self.active:
            raise _Refused(node.start_mark, "a YAML alias refers to a value that contains it")
        self.doc.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            self.active.add(id(node))
            try:
                return self._mapping(node, path)
            finally:
                self.active.discard(id(node))
        if isinstance(node, yaml.SequenceNode):
            self.active.add(id(node))
            try:
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            finally:
                self.active.discard(id(node))
        return self._scalar(node)

    def _mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[Any, Any]:
        self.loader.flatten_mapping(node)  # YAML merge keys (<<: *anchor)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _Refused(key_node.start_mark, "a mapping key must be a plain value")
            key = self._scalar(key_node)
            if not isinstance(key, str | int | float | bool) or key is None:
                key = str(key)
            child = (*path, key)
            self.doc.positions[(*child, "<key>")] = (
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
            if key in out:
                self.doc.problems.append(
                    self.doc.problem(
                        child, f"duplicate key {key!r} (the later one would win)", key=True
                    )
                )
            out[key] = self.build(value_node, child)
        return out

    def _scalar(self, node: yaml.Node) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except (ValueError, TypeError, OverflowError) as exc:  # !!int x, 5,000 digits
            raise _Refused(node.start_mark, f"cannot read this value ({node.tag}): {exc}") from None
