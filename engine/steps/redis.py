"""`redis`: commands from the control node to Redis, through redis-py.

`command` is one command, as a string split like a shell would split it
(``"INFO memory"``, ``"GET 'a key'"``) or as a list (``[SET, k, v]``);
`commands` is a list of those, sent as one pipeline (not a MULTI transaction).

Replies are returned as Redis sent them (RESP2, which every Redis version
speaks), with bytes decoded as UTF-8 (invalid bytes replaced) and integers as
integers, so ``SET`` gives ``"OK"`` and ``PING`` ``"PONG"``. A few replies are
parsed because nobody wants them raw: ``INFO`` into a dict whose numeric values
are numbers (``keyspace_hits`` is an int, ``db0`` a dict), ``HGETALL``,
``CONFIG GET`` and ``MEMORY STATS`` into dicts, ``CLIENT LIST`` into a list of
dicts (numbers as numbers in all but HGETALL, whose values are user data).
The result holds `value` for `command`, `replies` for `commands`.

Under --dry-run only read-only commands run: every command of the step must be
in READ_ONLY_COMMANDS, an allowlist taken from the commands Redis itself flags
``readonly`` (plus harmless introspection). Anything not listed counts as a
write, so an unknown command is never run by a dry run.

The operator's second Ctrl-C closes the step's connection: a blocking command
(BLPOP, WAIT) then stops waiting in the server too. A running Lua script does
not: Redis runs it to the end (SCRIPT KILL is for scripts that wrote nothing).
"""

from __future__ import annotations

import shlex
from typing import Any

from pydantic import field_serializer, field_validator, model_validator

from engine.errors import ServiceError, StepError, StepTimeout
from engine.redaction import dsn_passwords, redact_dsn, scrub

from .base import StepContext, StepSpec, StepType

SERVICE = "redis"
DEFAULT_CONNECT_TIMEOUT = 10.0

Word = str | int | float
CommandSpec = str | list[Word]

# Commands whose first argument is a subcommand, named as "CONFIG GET".
CONTAINER_COMMANDS = frozenset(
    {"ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "DEBUG", "FUNCTION", "LATENCY",
     "MEMORY", "MODULE", "OBJECT", "PUBSUB", "SCRIPT", "SLOWLOG", "XINFO"}
)  # fmt: skip

READ_ONLY_COMMANDS = frozenset(
    {
        # strings, bits, HyperLogLog
        "GET", "MGET", "STRLEN", "GETRANGE", "SUBSTR", "GETBIT", "BITCOUNT", "BITPOS", "LCS",
        "PFCOUNT",
        # keys
        "EXISTS", "TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME", "TYPE", "KEYS", "SCAN",
        "RANDOMKEY", "DBSIZE", "DUMP",
        "OBJECT ENCODING", "OBJECT FREQ", "OBJECT IDLETIME", "OBJECT REFCOUNT",
        # hashes
        "HGET", "HMGET", "HGETALL", "HLEN", "HKEYS", "HVALS", "HEXISTS", "HSTRLEN",
        "HRANDFIELD", "HSCAN",
        # lists
        "LRANGE", "LLEN", "LINDEX", "LPOS",
        # sets
        "SCARD", "SMEMBERS", "SISMEMBER", "SMISMEMBER", "SRANDMEMBER", "SINTER", "SINTERCARD",
        "SUNION", "SDIFF", "SSCAN",
        # sorted sets
        "ZCARD", "ZRANGE", "ZRANGEBYSCORE", "ZRANGEBYLEX", "ZREVRANGE", "ZREVRANGEBYSCORE",
        "ZREVRANGEBYLEX", "ZSCORE", "ZMSCORE", "ZRANK", "ZREVRANK", "ZCOUNT", "ZLEXCOUNT",
        "ZRANDMEMBER", "ZSCAN",
        # streams, geo
        "XLEN", "XRANGE", "XREVRANGE", "XINFO STREAM", "XINFO GROUPS", "XINFO CONSUMERS",
        "GEOPOS", "GEODIST", "GEOHASH", "GEOSEARCH",
        # server introspection
        "INFO", "PING", "ECHO", "TIME", "ROLE", "LASTSAVE",
        "MEMORY USAGE", "MEMORY STATS", "MEMORY DOCTOR",
        "SLOWLOG GET", "SLOWLOG LEN", "CONFIG GET",
        "CLIENT LIST", "CLIENT INFO", "CLIENT GETNAME", "CLIENT ID",
        "LATENCY LATEST", "LATENCY HISTORY", "LATENCY DOCTOR",
        "COMMAND COUNT", "COMMAND INFO", "COMMAND DOCS",
        "CLUSTER INFO", "CLUSTER NODES", "CLUSTER SLOTS", "CLUSTER SHARDS",
        "PUBSUB CHANNELS", "PUBSUB NUMSUB", "PUBSUB NUMPAT",
    }
)  # fmt: skip


def split_command(command: CommandSpec) -> list[str]:
    """One command as its words: a string split like a shell, a list as given."""
    if isinstance(command, str):
        try:
            words = shlex.split(command)
        except ValueError as exc:
            raise ValueError(f"cannot split {command!r}: {exc}") from None
    else:
        words = [_word(w) for w in command]
    if not words:
        raise ValueError("a command cannot be empty")
    return words


def _word(word: Word) -> str:
    if isinstance(word, bool):
        return "1" if word else "0"
    return str(word)


def command_name(words: list[str]) -> str:
    """The name Redis files a command under: "GET", or "CONFIG GET" for subcommands."""
    name = words[0].upper()
    if name in CONTAINER_COMMANDS and len(words) > 1:
        name = f"{name} {words[1].upper()}"
    return name


def is_read_only(words: list[str]) -> bool:
    return command_name(words) in READ_ONLY_COMMANDS


class RedisSpec(StepSpec):
    url: str
    command: CommandSpec | None = None
    commands: list[CommandSpec] | None = None
    tunnel: bool = False

    # Field validators, not one model validator: the loader defers an error to
    # rendering time only when it is located at a field holding a template.
    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError("the url must start with redis://, rediss:// or unix://")
        return value

    @field_serializer("url")
    def _hide_password(self, url: str) -> str:
        # Dumps are for display (--dry-run shows the rendered step): never the password.
        return redact_dsn(url)

    @field_validator("command")
    @classmethod
    def _command(cls, value: CommandSpec | None) -> CommandSpec | None:
        if value is not None:
            split_command(value)  # ValueError when empty or unsplittable
        return value

    @field_validator("commands")
    @classmethod
    def _commands(cls, value: list[CommandSpec] | None) -> list[CommandSpec] | None:
        if value is not None:
            if not value:
                raise ValueError("`commands` cannot be empty")
            for command in value:
                split_command(command)
        return value

    @model_validator(mode="after")
    def _one_of(self) -> RedisSpec:
        if (self.command is None) == (self.commands is None):
            raise ValueError("give exactly one of `command` and `commands` (a pipeline)")
        return self

    def argvs(self) -> list[list[str]]:
        if self.command is not None:
            return [split_command(self.command)]
        return [split_command(c) for c in self.commands or []]


class RedisStep(StepType):
    name = "redis"
    Spec = RedisSpec

    def run(self, spec: RedisSpec, ctx: StepContext) -> dict[str, Any]:
        for secret in dsn_passwords(spec.url):
            ctx.redactor.add(secret)
        argvs = spec.argvs()
        if spec.tunnel:
            host, port = _tunnel_target(spec.url)
            with ctx.connection.tunnel(host, port) as local:
                url = _with_address(spec.url, *local)
                return _run(spec, url, argvs, ctx, f" through a tunnel via {ctx.host.name}")
        return _run(spec, spec.url, argvs, ctx, "")

    def dry_run_safe(self, spec: RedisSpec) -> bool:
        return all(is_read_only(words) for words in spec.argvs())

    def describe(self, spec: RedisSpec) -> str:
        shown = [shlex.join(words) for words in spec.argvs()]
        text = shown[0] if len(shown) == 1 else f"pipeline: {'; '.join(shown)}"
        return text if len(text) <= 100 else text[:97] + "..."


def _tunnel_target(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme == "unix":
        raise ServiceError(SERVICE, "tunnel: cannot reach a Unix socket; give a redis:// url")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ServiceError(SERVICE, f"invalid url {redact_dsn(url)}: bad port") from None
    return parts.hostname or "localhost", port


def _with_address(url: str, host: str, port: int) -> str:
    """`url` aimed at host:port instead, credentials, db and options kept."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    address = f"[{host}]" if ":" in host else host
    netloc = f"{userinfo}@{address}:{port}" if userinfo else f"{address}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _run(
    spec: RedisSpec, url: str, argvs: list[list[str]], ctx: StepContext, via: str
) -> dict[str, Any]:
    import redis
    import redis.exceptions as rex

    where = f"{redact_dsn(spec.url)}{via}"
    try:
        client = redis.Redis.from_url(
            url,
            protocol=2,
            socket_timeout=ctx.timeout,
            socket_connect_timeout=ctx.timeout or DEFAULT_CONNECT_TIMEOUT,
            retry_on_timeout=False,
        )
    except (ValueError, rex.RedisError) as exc:
        raise ServiceError(SERVICE, f"invalid url {where}: {scrub(str(exc), spec.url)}") from None
    # Raw replies: the few parsed ones are parsed here, by PARSERS below.
    client.response_callbacks.clear()
    # The operator's second Ctrl-C closes the socket: that ends a blocking command
    # (BLPOP, WAIT...) in the server too; redis has no cancel for a request.
    with ctx.cancellable(client.connection_pool.disconnect) as cancelled:
        try:
            if cancelled.is_set():  # the second Ctrl-C came before anything was sent
                raise RuntimeError("nothing sent")
            return _commands(client, spec, argvs, where, ctx.timeout)
        except Exception as exc:
            if not cancelled.is_set():
                raise
            raise ServiceError(
                SERVICE,
                f"cancelled: the run was interrupted (Ctrl-C) while waiting on {where}; "
                "the connection was closed",
            ) from exc
        finally:
            client.close()


def _commands(
    client: Any, spec: RedisSpec, argvs: list[list[str]], where: str, timeout: float | None
) -> dict[str, Any]:
    import redis.exceptions as rex

    try:
        if spec.command is not None:
            words = argvs[0]
            return {"value": _reply(words, client.execute_command(*words))}
        pipe = client.pipeline(transaction=False)
        for words in argvs:
            pipe.execute_command(*words)
        raw = pipe.execute(raise_on_error=False)
        return _pipeline_result(argvs, raw, spec.url)
    except rex.AuthenticationError as exc:
        raise ServiceError(
            SERVICE, f"authentication failed for {where}: {_msg(exc, spec.url)}", code="WRONGPASS"
        ) from None
    except rex.TimeoutError as exc:
        limit = f" of {timeout:g}s" if timeout else ""
        raise StepTimeout(
            f"{SERVICE}: {where} did not answer within the step timeout{limit}: "
            f"{_msg(exc, spec.url)}"
        ) from None
    except rex.ConnectionError as exc:
        raise ServiceError(SERVICE, f"cannot connect to {where}: {_msg(exc, spec.url)}") from None
    except rex.ResponseError as exc:
        code, message = _error_code(exc, spec.url)
        raise ServiceError(SERVICE, f"{message} (on {where})", code=code) from None
    except rex.RedisError as exc:
        raise ServiceError(SERVICE, f"{_msg(exc, spec.url)} (on {where})") from None


def _pipeline_result(argvs: list[list[str]], raw: list[Any], url: str) -> dict[str, Any]:
    import redis.exceptions as rex

    replies: list[Any] = []
    failed: list[tuple[int, list[str], Exception]] = []
    for index, (words, reply) in enumerate(zip(argvs, raw, strict=True)):
        if isinstance(reply, Exception):
            failed.append((index, words, reply))
            replies.append({"error": _msg(reply, url)})
        else:
            replies.append(_reply(words, reply))
    if failed:
        index, words, error = failed[0]
        code = _error_code(error, url)[0] if isinstance(error, rex.ResponseError) else ""
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        what = f"pipeline command {index + 1} ({command_name(words)})"
        raise ServiceError(
            SERVICE,
            f"{what} failed: {_msg(error, url)}{more}",
            code=code,
            data={"replies": replies},
        )
    return {"replies": replies}


def _msg(exc: BaseException, url: str) -> str:
    return " ".join(scrub(str(exc), url).split())


def _error_code(exc: BaseException, url: str) -> tuple[str, str]:
    """Redis error replies start with a code word (WRONGTYPE, NOPERM); redis-py strips ERR."""
    message = _msg(exc, url)
    first, _, rest = message.partition(" ")
    if first.isupper() and first.isalpha() and len(first) > 2 and rest:
        return first, rest
    return "ERR", message


# -- replies --------------------------------------------------------------------


def decode(value: Any) -> Any:
    """A raw RESP2 reply as plain data: text for bytes, lists for arrays."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        return {decode(k): decode(v) for k, v in value.items()}
    return value


def _reply(words: list[str], raw: Any) -> Any:
    value = decode(raw)
    parser = PARSERS.get(command_name(words))
    if parser is None:
        return value
    try:
        return parser(value)
    except (TypeError, ValueError, IndexError) as exc:
        raise StepError(f"cannot parse the reply of {command_name(words)}: {exc}") from None


def number(text: str) -> Any:
    """Numeric text as a number ("12" → 12, "0.5" → 0.5); other text unchanged."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def parse_info(text: str) -> dict[str, Any]:
    """INFO's ``key:value`` lines as a dict; ``a=1,b=2`` values (db0, cmdstat_*) as dicts.

    Sections are flattened (as redis-py does), so ``keyspace_hits`` and ``db0`` sit
    side by side whatever section was asked for.
    """
    info: dict[str, Any] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        key, _, raw = line.partition(":")
        if "=" in raw and key not in ("executable", "config_file"):
            sub: dict[str, Any] = {}
            for item in raw.split(","):
                name, eq, val = item.partition("=")
                if eq:
                    sub[name] = number(val)
            info[key] = sub
        else:
            info[key] = raw if key in _TEXT_INFO_FIELDS else number(raw)
    return info


# Identifiers that merely look numeric ("00000000" would become 0).
_TEXT_INFO_FIELDS = frozenset(
    {"redis_version", "redis_git_sha1", "redis_build_id", "run_id",
     "master_replid", "master_replid2", "valkey_version", "server_name"}
)  # fmt: skip


def _pairs(value: list[Any]) -> dict[str, Any]:
    """A flat [k1, v1, k2, v2] reply as a dict; values stay as sent (HGETALL holds user data)."""
    return {str(value[i]): value[i + 1] for i in range(0, len(value) - 1, 2)}


def _numeric(value: Any) -> Any:
    return number(value) if isinstance(value, str) else value


def _config(value: list[Any]) -> dict[str, Any]:
    # maxmemory "0" → 0, so thresholds can divide by it.
    return {k: _numeric(v) for k, v in _pairs(value).items()}


def _memory_stats(value: list[Any]) -> dict[str, Any]:
    stats = _pairs(value)
    return {k: (_config(v) if isinstance(v, list) else _numeric(v)) for k, v in stats.items()}


_TEXT = frozenset({"name", "addr", "laddr", "flags", "events", "cmd", "user", "lib-name"})


def _client_list(text: str) -> list[dict[str, Any]]:
    clients = []
    for line in text.splitlines():
        fields = (item.partition("=") for item in line.split(" ") if "=" in item)
        clients.append({k: (v if k in _TEXT else number(v)) for k, _, v in fields})
    return clients


PARSERS: dict[str, Any] = {
    "INFO": parse_info,
    "HGETALL": _pairs,
    "CONFIG GET": _config,
    "MEMORY STATS": _memory_stats,
    "CLIENT LIST": _client_list,
}
