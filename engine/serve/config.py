"""The `runbook serve` config file: where to listen, which runbooks, who may do what.

Read and checked whole before the server starts, so a typo is an error with
the file and the field path (exit 65), not a surprise at the first request.
Relative paths are relative to the config file, so the server may be started
from anywhere. A webhook rule may only name a runbook whose header says
`webhook: true`: an alert must not start a runbook that was not written to be
started so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import InvalidError, Location, Problem, UsageError
from engine.users import User, parse_users, roles_in

SOURCES = ("alertmanager", "grafana")
_TOP_KEYS = {
    "listen", "runbooks", "inventory", "limit", "users", "runbook_params",
    "secret_params_from_request", "webhooks",
}  # fmt: skip
_RULE_KEYS = {"name", "source", "match", "runbook", "params", "limit"}


class ConfigInvalid(InvalidError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems, "serve config")


@dataclass(frozen=True)
class WebhookRule:
    """An alert that starts a runbook: params rendered from the alert's labels."""

    name: str
    source: str  # alertmanager | grafana
    match: dict[str, str]
    runbook: str
    params: dict[str, Any] = field(default_factory=dict)
    limit: str | None = None

    def matches(self, labels: Mapping[str, Any]) -> bool:
        return all(str(labels.get(k)) == v for k, v in self.match.items())


@dataclass
class ServeConfig:
    path: Path
    host: str = "127.0.0.1"
    port: int = 8080
    runbooks: Path = Path("runbooks")
    inventory: str | None = None  # comma-joined sources, as `-i a -i b`
    limit: str | None = None
    users: dict[str, User] = field(default_factory=dict)
    runbook_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    secret_params_from_request: dict[str, list[str]] = field(default_factory=dict)
    webhooks: list[WebhookRule] = field(default_factory=list)

    def roles(self, user: str) -> frozenset[str]:
        """A user's roles, for gate decisions (engine/history/gates.py)."""
        return roles_in(self.users, user)


def load_config(path: str | Path) -> ServeConfig:
    """The config at `path`; UsageError when unreadable, ConfigInvalid (65) when wrong."""
    import yaml

    file = Path(path)
    try:
        doc = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise UsageError(f"--config {path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigInvalid([Problem(f"not valid YAML: {exc}", Location(str(path)))]) from None
    problems: list[Problem] = []
    config = _parse(file, doc, problems)
    if not problems:
        _check_webhook_runbooks(config, problems)
    if problems:
        raise ConfigInvalid(problems)
    return config


def _parse(file: Path, doc: Any, problems: list[Problem]) -> ServeConfig:
    where = str(file)

    def bad(field_path: str, message: str) -> None:
        problems.append(Problem(message, Location(where), path=field_path))

    config = ServeConfig(path=file.resolve())
    if not isinstance(doc, Mapping):
        bad("", "expected a mapping (listen, runbooks, inventory, users, webhooks)")
        return config
    for key in sorted(set(doc) - _TOP_KEYS):
        bad(str(key), f"unknown key; known: {', '.join(sorted(_TOP_KEYS))}")
    base = file.resolve().parent
    _listen(doc.get("listen") or {}, config, bad)
    config.runbooks = base / str(doc.get("runbooks") or "runbooks")
    if not config.runbooks.is_dir():
        bad("runbooks", f"{config.runbooks} is not a directory")
    config.inventory = _inventory(doc.get("inventory"), base, bad)
    if doc.get("limit") is not None:
        config.limit = str(doc["limit"])
    try:
        config.users = parse_users(doc.get("users") or {}, where)
    except UsageError as exc:
        bad("users", str(exc).removeprefix(f"{where}: "))
    config.runbook_params = _mapping_of_mappings(doc.get("runbook_params"), "runbook_params", bad)
    config.secret_params_from_request = _secret_lists(doc.get("secret_params_from_request"), bad)
    config.webhooks = _rules(doc.get("webhooks"), bad)
    return config


def _listen(raw: Any, config: ServeConfig, bad: Any) -> None:
    if not isinstance(raw, Mapping):
        bad("listen", "expected {host: 127.0.0.1, port: 8080}")
        return
    for key in sorted(set(raw) - {"host", "port"}):
        bad(f"listen.{key}", "unknown key; known: host, port")
    config.host = str(raw.get("host") or config.host)
    port = raw.get("port", config.port)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        bad("listen.port", f"{port!r} is not a port number (1-65535)")
    else:
        config.port = port


def _inventory(raw: Any, base: Path, bad: Any) -> str | None:
    if raw is None:
        return None
    items = raw if isinstance(raw, list) else [raw]
    if not items or not all(isinstance(i, str) and i for i in items):
        bad("inventory", "a path (file, directory or script) or a list of them")
        return None
    return ",".join(str(base / i) for i in items)


def _mapping_of_mappings(raw: Any, name: str, bad: Any) -> dict[str, dict[str, Any]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(isinstance(v, Mapping) for v in raw.values()):
        bad(name, "expected RUNBOOK: {PARAM: value}")
        return {}
    return {str(k): dict(v) for k, v in raw.items()}


def _secret_lists(raw: Any, bad: Any) -> dict[str, list[str]]:
    if raw is None:
        return {}
    ok = isinstance(raw, Mapping) and all(
        isinstance(v, list) and all(isinstance(p, str) for p in v) for v in raw.values()
    )
    if not ok:
        bad("secret_params_from_request", "expected RUNBOOK: [param names]")
        return {}
    return {str(k): list(v) for k, v in raw.items()}


def _rules(raw: Any, bad: Any) -> list[WebhookRule]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        bad("webhooks", "expected a list of rules {name, source, match, runbook, params}")
        return []
    rules: list[WebhookRule] = []
    for i, entry in enumerate(raw):
        where = f"webhooks[{i}]"
        if not isinstance(entry, Mapping):
            bad(where, "expected {name, source, match, runbook, params, limit}")
            continue
        for key in sorted(set(entry) - _RULE_KEYS):
            bad(f"{where}.{key}", f"unknown key; known: {', '.join(sorted(_RULE_KEYS))}")
        missing = [k for k in ("name", "source", "runbook") if not entry.get(k)]
        for key in missing:
            bad(f"{where}.{key}", "required")
        if entry.get("source") and entry["source"] not in SOURCES:
            bad(f"{where}.source", f"{entry['source']!r}: one of {', '.join(SOURCES)}")
        match, params = entry.get("match") or {}, entry.get("params") or {}
        if not isinstance(match, Mapping):
            bad(f"{where}.match", "expected {label: value}")
        if not isinstance(params, Mapping):
            bad(f"{where}.params", "expected {param: value or template}")
        if missing or not isinstance(match, Mapping) or not isinstance(params, Mapping):
            continue
        if any(r.name == str(entry["name"]) for r in rules):
            bad(f"{where}.name", f"{entry['name']!r} is used by an earlier rule")
        rules.append(
            WebhookRule(
                str(entry["name"]), str(entry["source"]),
                {str(k): str(v) for k, v in match.items()}, str(entry["runbook"]),
                dict(params), str(entry["limit"]) if entry.get("limit") else None,
            )
        )  # fmt: skip
    return rules


def runbook_index(directory: Path) -> dict[str, Path]:
    """Runbook name → file, for the runbooks under `directory` that load."""
    from engine.format.catalog import catalogue

    return {e.name: e.path for e in catalogue(directory) if e.error is None}


def _check_webhook_runbooks(config: ServeConfig, problems: list[Problem]) -> None:
    """Each rule's runbook exists and says `webhook: true`."""
    if not config.webhooks:
        return
    from engine.format.loader import load_runbook

    index = runbook_index(config.runbooks)
    for i, rule in enumerate(config.webhooks):
        where = Location(str(config.path))
        path = index.get(rule.runbook)
        if path is None:
            problems.append(
                Problem(f"no runbook {rule.runbook!r} under {config.runbooks}", where,
                        path=f"webhooks[{i}].runbook")
            )  # fmt: skip
            continue
        if not load_runbook(path).header.webhook:
            problems.append(
                Problem(
                    f"runbook {rule.runbook} ({path}) may not be started by an alert: "
                    "its header does not say `webhook: true`",
                    where,
                    path=f"webhooks[{i}].runbook",
                )
            )
