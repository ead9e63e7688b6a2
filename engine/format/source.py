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
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        doc = YamlDoc(str(path), "", None)
        doc.problems.append(Problem(f"cannot read file: {exc.strerror}", Location(str(path))))
        return doc
    return load_yaml(text, str(path))


def load_yaml(text: str, file: str) -> YamlDoc:
    doc = YamlDoc(file, text, None)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            doc.data = None
            return doc
        doc.data = _build(node, (), loader, doc)
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


def _build(node: yaml.Node, path: PathKey, loader: Any, doc: YamlDoc) -> Any:
    doc.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # YAML merge keys (<<: *anchor)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) or key is None:
                key = str(key)
            child = (*path, key)
            doc.positions[(*child, "<key>")] = (
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
            if key in out:
                doc.problems.append(
                    doc.problem(child, f"duplicate key {key!r} (the later one would win)", key=True)
                )
            out[key] = _build(value_node, child, loader, doc)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), loader, doc) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
