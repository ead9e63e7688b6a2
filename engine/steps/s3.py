"""`s3`: objects in S3 or an S3-compatible store, from the control node.

Host files travel as streams: `from_host` reads the host's file through its
connection straight into a multipart upload, `to_host` writes the object body
straight into the host's connection, so a 50 GB dump needs neither 50 GB of
memory nor of disk on the control node. Memory stays near
part_size x in-memory parts whatever the object's size.

botocore's exceptions end here: callers see ServiceError("s3", ..., code=<S3
error code>) naming the bucket and key, never the credentials.
"""

from __future__ import annotations

import mimetypes
import os
import re
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from engine.errors import ServiceError, StepError, StepTimeout
from engine.format.model import Duration
from engine.redaction import mask, redact_dsn

from .base import StepContext, StepSpec, StepType
from .s3_stream import Deadline, Reader, parse_size

Action = Literal["put", "get", "list", "head", "delete", "prune"]

_COMMON = {"action", "bucket", "endpoint", "region", "access_key", "secret_key", "session_token"}
# Per action: (required fields, other allowed fields).
_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    "put": ({"key"}, {"file", "from_host", "content_type", "part_size"}),
    "get": ({"key"}, {"file", "to_host"}),
    "list": (set(), {"prefix", "limit"}),
    "head": ({"key"}, set()),
    "delete": ({"key"}, set()),
    "prune": (set(), {"prefix", "older_than", "keep_last"}),
}
DEFAULT_PART_SIZE = 16 << 20
MIN_PART_SIZE = 5 << 20  # S3's minimum for every part but the last
IN_MEMORY_PARTS = 4
DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys


class S3Spec(StepSpec):
    action: Action
    bucket: str = Field(min_length=1)
    key: str | None = None
    prefix: str | None = None
    file: str | None = None
    from_host: str | None = None
    to_host: str | None = None
    older_than: Duration | None = None
    keep_last: int | None = Field(default=None, ge=0)
    limit: int | None = Field(default=None, ge=1)
    content_type: str | None = None
    part_size: int | str | None = None
    endpoint: str | None = None
    region: str | None = None
    access_key: str | None = None
    # Never part of a dump (dry-run display, reports), whatever rendered them.
    secret_key: str | None = Field(default=None, exclude=True)
    session_token: str | None = Field(default=None, exclude=True)

    @field_validator("part_size")
    @classmethod
    def _part_size(cls, value: int | str | None) -> int | None:
        if value is None:
            return None
        size = parse_size(value)
        if size < MIN_PART_SIZE:
            raise ValueError("part_size is at least 5MiB (S3's minimum part size)")
        return size

    @model_validator(mode="after")
    def _fields_of_action(self) -> S3Spec:
        required, allowed = _FIELDS[self.action]
        given = {f for f in self.model_fields_set if getattr(self, f) is not None}
        missing = sorted(required - given)
        if missing:
            raise ValueError(f"action {self.action} needs `{'`, `'.join(missing)}`")
        extra = sorted(given - required - allowed - _COMMON)
        if extra:
            raise ValueError(f"`{'`, `'.join(extra)}` does not apply to action {self.action}")
        if self.action == "put" and (self.file is None) == (self.from_host is None):
            raise ValueError("action put needs exactly one of `file` (control node) or `from_host`")
        if self.action == "get" and (self.file is None) == (self.to_host is None):
            raise ValueError("action get needs exactly one of `file` (control node) or `to_host`")
        if self.action == "prune" and self.older_than is None and self.keep_last is None:
            raise ValueError("action prune needs `older_than`, `keep_last` or both")
        if (self.access_key is None) != (self.secret_key is None):
            raise ValueError("give both `access_key` and `secret_key`, or neither")
        return self


class S3Step(StepType):
    name = "s3"
    Spec = S3Spec

    def dry_run_safe(self, spec: S3Spec) -> bool:
        return spec.action in ("list", "head")

    def describe(self, spec: S3Spec) -> str:
        target = f"s3://{spec.bucket}/{spec.key or spec.prefix or ''}"
        if spec.action == "put":
            source = spec.file or f"{spec.from_host} (on the host)"
            return f"upload {source} to {target}"
        if spec.action == "get":
            dest = spec.file or f"{spec.to_host} (on the host)"
            return f"download {target} to {dest}"
        if spec.action == "prune":
            rules = []
            if spec.keep_last is not None:
                rules.append(f"keeping the newest {spec.keep_last}")
            if spec.older_than is not None:
                rules.append(f"deleting only objects older than {spec.older_than:g}s")
            return f"prune {target}*: " + ", ".join(rules)
        return f"{spec.action} {target}"

    def run(self, spec: S3Spec, ctx: StepContext) -> dict[str, Any]:
        for value in (spec.secret_key, spec.access_key, spec.session_token):
            if value:
                ctx.redactor.add(value)
        # The second Ctrl-C sets `cancelled`; transfers stop at their next read
        # (Deadline.check). Single requests (list, head, delete) are short.
        with ctx.cancellable(_nothing) as cancelled:
            op = _Operation(spec, ctx, cancelled)
            try:
                op.deadline.check()  # a step that starts after the Ctrl-C sends nothing
                action: Callable[[], dict[str, Any]] = getattr(op, f"do_{spec.action}")
                return action()
            except StepError:
                raise
            except Exception as exc:
                raise op.translate(exc) from None


def _nothing() -> None:
    """The cancel itself: nothing to send; the transfer sees the event and stops."""


class _Operation:
    """One step's S3 work: a client, the spec, and error translation."""

    def __init__(self, spec: S3Spec, ctx: StepContext, cancelled: threading.Event) -> None:
        self.spec = spec
        self.ctx = ctx
        where = f"s3://{spec.bucket}/{spec.key or spec.prefix or ''}"
        self.deadline = Deadline(ctx.timeout, spec.action, cancelled, where)
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            spec, timeout = self.spec, self.ctx.timeout
            options: dict[str, Any] = {
                "connect_timeout": min(timeout, 10.0) if timeout else 10.0,
                "read_timeout": timeout or 60.0,
                "retries": {"max_attempts": 3, "mode": "standard"},
            }
            if spec.endpoint:
                # S3-compatible stores (MinIO, Ceph, moto) want path-style URLs and
                # often lack the newer default checksums.
                options["s3"] = {"addressing_style": "path"}
                options["request_checksum_calculation"] = "when_required"
                options["response_checksum_validation"] = "when_required"
            session = boto3.session.Session(
                aws_access_key_id=spec.access_key,
                aws_secret_access_key=spec.secret_key,
                aws_session_token=spec.session_token,
                region_name=spec.region,
            )
            self._client = session.client(
                "s3", endpoint_url=spec.endpoint or None, config=Config(**options)
            )
        return self._client

    # ------------------------------------------------------------ actions

    def do_put(self) -> dict[str, Any]:
        from boto3.s3.transfer import TransferConfig

        spec = self.spec
        extra: dict[str, Any] = {}
        ctype = spec.content_type or mimetypes.guess_type(spec.key or "")[0]
        if ctype:
            extra["ContentType"] = ctype
        part = int(spec.part_size or DEFAULT_PART_SIZE)  # parsed to bytes by the Spec
        config = TransferConfig(
            multipart_threshold=part, multipart_chunksize=part, max_concurrency=IN_MEMORY_PARTS
        )
        # Not a constructor argument of boto3's TransferConfig, but honoured by s3transfer.
        config.max_in_memory_upload_chunks = IN_MEMORY_PARTS
        if spec.file is not None:
            path = os.path.expanduser(spec.file)
            if not os.path.isfile(path):
                raise StepError(f"s3 put: {spec.file!r} is not a file on the control node")
            with open(path, "rb") as stream:
                reader = Reader(stream, self.deadline)
                self.client.upload_fileobj(
                    reader, spec.bucket, spec.key, ExtraArgs=extra or None, Config=config
                )
        else:
            assert spec.from_host is not None
            with self.ctx.connection.get(spec.from_host) as stream:
                reader = Reader(stream, self.deadline)
                self.client.upload_fileobj(
                    reader, spec.bucket, spec.key, ExtraArgs=extra or None, Config=config
                )
        data = self._head()
        data["uploaded"] = reader.count
        if data["size"] != reader.count:
            raise ServiceError(
                "s3",
                f"s3://{spec.bucket}/{spec.key}: stored {data['size']} bytes "
                f"but read {reader.count} from the source",
                code="IncompleteUpload",
                data=data,
            )
        return data

    def do_get(self) -> dict[str, Any]:
        spec = self.spec
        response = self.client.get_object(Bucket=spec.bucket, Key=spec.key)
        body = response["Body"]
        reader = Reader(body, self.deadline)
        try:
            if spec.file is not None:
                written, where = self._download_to_file(reader), {"file": spec.file}
            else:
                assert spec.to_host is not None
                written = self.ctx.connection.put(reader, spec.to_host)
                where = {"to_host": spec.to_host}
        finally:
            body.close()
        expected = response.get("ContentLength")
        if expected is not None and written != expected:
            raise ServiceError(
                "s3",
                f"s3://{spec.bucket}/{spec.key}: got {written} of {expected} bytes",
                code="IncompleteBody",
            )
        return {**_meta(spec, response), "size": written, **where}

    def _download_to_file(self, reader: Reader) -> int:
        assert self.spec.file is not None and self.spec.key is not None
        path = os.path.expanduser(self.spec.file)
        if os.path.isdir(path):
            path = os.path.join(path, os.path.basename(self.spec.key.rstrip("/")) or "object")
        # Written aside and renamed, so a failed download never leaves half a file.
        partial = f"{path}.part-{uuid.uuid4().hex[:8]}"
        try:
            with open(partial, "wb") as out:
                while chunk := reader.read(1 << 20):
                    out.write(chunk)
            os.replace(partial, path)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
        return reader.count

    def do_head(self) -> dict[str, Any]:
        return self._head()

    def _head(self) -> dict[str, Any]:
        response = self.client.head_object(Bucket=self.spec.bucket, Key=self.spec.key)
        return {**_meta(self.spec, response), "size": response.get("ContentLength")}

    def do_list(self) -> dict[str, Any]:
        objects, truncated = self._list(self.spec.limit)
        newest = max(objects, key=_age_order, default=None)
        data: dict[str, Any] = {
            "bucket": self.spec.bucket,
            "prefix": self.spec.prefix or "",
            "objects": objects,
            "count": len(objects),
            "total_size": sum(o["size"] for o in objects),
            "truncated": truncated,
            "newest": dict(newest) if newest else None,
        }
        if newest:
            modified = datetime.fromisoformat(newest["last_modified"])
            data["newest"]["age_seconds"] = round((self.ctx.now() - modified).total_seconds(), 1)
        return data

    def _list(self, limit: int | None = None) -> tuple[list[dict[str, Any]], bool]:
        paginator = self.client.get_paginator("list_objects_v2")
        objects: list[dict[str, Any]] = []
        for page in paginator.paginate(Bucket=self.spec.bucket, Prefix=self.spec.prefix or ""):
            self.deadline.check()
            for item in page.get("Contents", []):
                if limit is not None and len(objects) >= limit:
                    return objects, True
                objects.append(
                    {
                        "key": item["Key"],
                        "size": item["Size"],
                        "last_modified": _iso(item["LastModified"]),
                        "etag": _etag(item.get("ETag")),
                    }
                )
        return objects, False

    def do_delete(self) -> dict[str, Any]:
        spec = self.spec
        try:
            self.client.head_object(Bucket=spec.bucket, Key=spec.key)
            existed = True
        except Exception as exc:
            if _code(exc) not in ("404", "NoSuchKey", "NotFound"):
                raise
            existed = False
        if existed:
            self.client.delete_object(Bucket=spec.bucket, Key=spec.key)
        return {"bucket": spec.bucket, "key": spec.key, "deleted": [spec.key] if existed else []}

    def do_prune(self) -> dict[str, Any]:
        spec = self.spec
        objects, _ = self._list()
        doomed = select_prune(objects, spec.keep_last, spec.older_than, self.ctx.now())
        doomed_keys = {o["key"] for o in doomed}
        kept = [o for o in objects if o["key"] not in doomed_keys]
        deleted: list[str] = []
        data: dict[str, Any] = {
            "bucket": spec.bucket,
            "prefix": spec.prefix or "",
            "objects": kept,
            "kept": [o["key"] for o in kept],
            "deleted": deleted,
            "deleted_size": sum(o["size"] for o in doomed),
        }
        if self.ctx.dry_run:
            # Reached only when the author marked the step `safe: true`: show, delete nothing.
            data["would_delete"] = [o["key"] for o in doomed]
            return data
        keys = [o["key"] for o in doomed]
        for start in range(0, len(keys), DELETE_BATCH):
            self.deadline.check()
            batch = keys[start : start + DELETE_BATCH]
            response = self.client.delete_objects(
                Bucket=spec.bucket,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )
            errors = response.get("Errors") or []
            failed = {e.get("Key") for e in errors}
            deleted.extend(k for k in batch if k not in failed)
            if errors:
                first = errors[0]
                raise ServiceError(
                    "s3",
                    f"prune s3://{spec.bucket}/{spec.prefix or ''}: could not delete "
                    f"{len(errors)} object(s), e.g. {first.get('Key')!r}: {first.get('Message')}",
                    code=str(first.get("Code") or "DeleteFailed"),
                    data=data,
                )
        return data

    # ------------------------------------------------------------- errors

    def scrub(self, text: str) -> str:
        spec = self.spec
        return self.ctx.redactor.text(
            mask(text, (spec.secret_key, spec.access_key, spec.session_token))
        )

    def translate(self, exc: Exception) -> StepError:
        """A botocore/boto3 exception as the engine error an operator can act on."""
        from botocore import exceptions as bx

        spec = self.spec
        where = f"s3://{spec.bucket}/{spec.key}" if spec.key else f"bucket {spec.bucket!r}"
        if isinstance(exc, bx.ConnectTimeoutError | bx.ReadTimeoutError):
            return StepTimeout(self.scrub(f"s3 {spec.action} {where}: {exc}"))
        if isinstance(exc, bx.EndpointConnectionError):
            endpoint = redact_dsn(spec.endpoint) if spec.endpoint else "the AWS S3 endpoint"
            return self._error(f"cannot reach {endpoint} ({where})", "EndpointUnreachable")
        if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
            return self._error(
                "no S3 credentials: set access_key/secret_key or configure AWS credentials",
                "NoCredentials",
            )
        code = _code(exc)
        if code is None:
            if isinstance(exc, bx.ParamValidationError):
                return StepError(self.scrub(f"s3 {spec.action}: {exc}"))
            if isinstance(exc, bx.BotoCoreError):
                return self._error(f"{spec.action} {where}: {exc}", type(exc).__name__)
            if isinstance(exc, OSError):  # the control node's own files
                return StepError(self.scrub(f"s3 {spec.action}: {exc}"))
            raise exc
        message = _server_message(exc)
        if code == "NoSuchBucket":
            text = f"bucket {spec.bucket!r} does not exist"
        elif code in ("NoSuchKey", "404", "NotFound"):
            code = "NoSuchKey" if spec.key else "NoSuchBucket"
            text = f"{where} does not exist" if spec.key else f"bucket {spec.bucket!r} not found"
        elif code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled"):
            code = "AccessDenied"
            text = f"access denied to {where}: the credentials lack permission for {spec.action}"
        elif code in (
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "InvalidToken",
            "ExpiredToken",
        ):
            # The server's message may echo the access key and the string to sign.
            text = f"the S3 credentials were rejected ({code}) for {where}"
        else:
            text = f"{spec.action} {where}: {message or code}"
        return self._error(text, code)

    def _error(self, message: str, code: str) -> ServiceError:
        return ServiceError("s3", self.scrub(message), code=code)


def select_prune(
    objects: list[dict[str, Any]],
    keep_last: int | None,
    older_than: float | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """The objects a prune deletes: beyond the newest `keep_last` AND older than `older_than`.

    Newest means latest LastModified; objects stored within the same second (S3
    keeps whole seconds) are ordered by key, later keys newer, which is right for
    the usual timestamped backup names.
    """
    ordered = sorted(objects, key=_age_order, reverse=True)
    doomed = []
    for index, obj in enumerate(ordered):
        if keep_last is not None and index < keep_last:
            continue
        if older_than is not None:
            age = (now - datetime.fromisoformat(obj["last_modified"])).total_seconds()
            if age <= older_than:
                continue
        doomed.append(obj)
    return doomed


def _age_order(obj: dict[str, Any]) -> tuple[datetime, str]:
    return (datetime.fromisoformat(obj["last_modified"]), obj["key"])


def _meta(spec: S3Spec, response: dict[str, Any]) -> dict[str, Any]:
    modified = response.get("LastModified")
    return {
        "bucket": spec.bucket,
        "key": spec.key,
        "etag": _etag(response.get("ETag")),
        "last_modified": _iso(modified) if modified else None,
        "content_type": response.get("ContentType"),
        "metadata": response.get("Metadata") or {},
    }


def _code(exc: BaseException) -> str | None:
    """The S3 error code of a ClientError, also when boto3 wrapped it in a transfer error."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code"):
            return str(response["Error"]["Code"])
        seen = seen.__cause__ or seen.__context__
    match = re.search(r"An error occurred \((\w+)\)", str(exc))
    return match[1] if match else None


def _server_message(exc: BaseException) -> str:
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            return str(response.get("Error", {}).get("Message") or "")
        seen = seen.__cause__ or seen.__context__
    return ""


def _etag(value: str | None) -> str | None:
    return value.strip('"') if value else value


def _iso(value: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a Z, as S3 itself writes it."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
