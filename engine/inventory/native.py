"""The native inventory format (docs/inventory.md): `defaults`, `vars`, `groups`, `hosts`.

Checked by hand rather than with pydantic so that every complaint, including
an unknown key nested three levels down, points at its own line and column.
"""

from __future__ import annotations

from typing import Any

from engine.format.source import PathKey, YamlDoc, format_path

from .model import HOST_FIELDS, RESERVED_GROUPS, Spec, check_field, set_field, unknown_key_hint

TOP_KEYS = ("defaults", "vars", "groups", "hosts")
GROUP_KEYS = ("vars", "hosts", "children", "zone")
HOST_KEYS = (*HOST_FIELDS, "vars")


def parse_native(doc: YamlDoc) -> Spec:
    spec = Spec(doc.file, doc.text, "native")
    _Reader(doc, spec).read()
    return spec


class _Reader:
    def __init__(self, doc: YamlDoc, spec: Spec) -> None:
        self.doc = doc
        self.spec = spec

    def problem(self, path: PathKey, message: str, hint: str = "", key: bool = False) -> None:
        where = self.doc.key_location(path) if key else self.doc.location(path)
        self.spec.problem(where, message, hint, format_path(path))

    def mapping(self, path: PathKey, value: Any, what: str) -> dict[Any, Any]:
        """`value` as a dict (null is empty); anything else is a problem."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(path, f"{what} must be a mapping, not {_kind(value)}")
            return {}
        return value

    def known(self, path: PathKey, data: dict[Any, Any], keys: tuple[str, ...]) -> None:
        for key in data:
            if key not in keys:
                self.problem(
                    (*path, key), f"unknown key {key!r}", unknown_key_hint(key, keys), key=True
                )

    def read(self) -> None:
        data = self.doc.data
        if data is None:
            if self.doc.problems:  # a syntax error, reported by the YAML reader
                return
            self.problem((), "the inventory is empty", "define `groups:` or `hosts:`")
            return
        top = self.mapping((), data, "an inventory")
        self.known((), top, TOP_KEYS)
        defaults = self.mapping(("defaults",), top.get("defaults"), "defaults")
        self.known(("defaults",), defaults, HOST_FIELDS)
        for name, value in defaults.items():
            if name in HOST_FIELDS:
                self.default(name, value)
        self.spec.vars = self.vars(("vars",), top.get("vars"))
        groups = self.mapping(("groups",), top.get("groups"), "groups")
        for name, body in groups.items():
            self.group(str(name), body)
        hosts = self.mapping(("hosts",), top.get("hosts"), "hosts")
        for name, body in hosts.items():
            self.host(("hosts", name), name, body)
        if not self.spec.hosts and not self.spec.problems:
            self.problem((), "the inventory defines no host", "add hosts under a group or `hosts:`")

    def default(self, name: str, value: Any) -> None:
        checked, error = check_field(name, value)
        if error:
            self.problem(("defaults", name), error)
            return
        self.spec.defaults[name] = checked
        self.spec.defaults_where[name] = self.doc.location(("defaults", name))

    def vars(self, path: PathKey, value: Any) -> dict[str, Any]:
        data = self.mapping(path, value, "vars")
        for key in data:
            if not isinstance(key, str):
                self.problem((*path, key), f"var name {key!r} must be text", key=True)
        return {str(k): v for k, v in data.items()}

    def group(self, name: str, body: Any) -> None:
        path: PathKey = ("groups", name)
        if name in RESERVED_GROUPS:
            hint = "put vars for every host under top-level `vars:`"
            if name == "ungrouped":
                hint = "put ungrouped hosts under top-level `hosts:`"
            self.problem(path, f"group name {name!r} is reserved", hint, key=True)
            return
        where = self.doc.key_location(path)
        group = self.spec.group(name, where)
        data = self.mapping(path, body, f"group {name!r}")
        self.known(path, data, GROUP_KEYS)
        group.vars = self.vars((*path, "vars"), data.get("vars"))
        if "zone" in data:
            zone, error = check_field("zone", data["zone"])
            if error:
                self.problem((*path, "zone"), error)
            else:
                group.zone = zone
        hosts = self.mapping((*path, "hosts"), data.get("hosts"), "hosts")
        for host_name, host_body in hosts.items():
            host = self.host((*path, "hosts", host_name), host_name, host_body)
            if host and host not in group.hosts:
                group.hosts.append(host)
        children = data.get("children")
        if children is None:
            return
        if not isinstance(children, list):
            self.problem((*path, "children"), "children must be a list of group names")
            return
        for i, child in enumerate(children):
            if not isinstance(child, str) or not child:
                self.problem((*path, "children", i), f"a child must be a group name, not {child!r}")
            elif child in group.children:
                self.problem((*path, "children", i), f"child group {child!r} is listed twice")
            else:
                group.children.append(child)
                group.child_where[child] = self.doc.location((*path, "children", i))

    def host(self, path: PathKey, raw_name: Any, body: Any) -> str | None:
        name = str(raw_name)
        if not name.strip() or any(c.isspace() for c in name):
            self.problem(path, f"host name {name!r} must be one word", key=True)
            return None
        decl = self.spec.host(name, self.doc.key_location(path))
        data = self.mapping(path, body, f"host {name!r}")
        self.known(path, data, HOST_KEYS)
        for key, value in data.items():
            if key in HOST_FIELDS:
                set_field(
                    self.spec,
                    decl,
                    key,
                    value,
                    self.doc.location((*path, key)),
                    format_path((*path, key)),
                )
        decl.vars.update(self.vars((*path, "vars"), data.get("vars")))
        return name


def _kind(value: Any) -> str:
    return {
        list: "a list",
        str: "text",
        int: "a number",
        float: "a number",
        bool: "true/false",
    }.get(type(value), type(value).__name__)
