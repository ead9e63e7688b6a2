"""The `s3` step against moto's standalone S3 server (a real HTTP server, own process)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.connections.local import LocalConnection
from engine.errors import ServiceError, StepError
from engine.inventory.host import localhost
from engine.redaction import Redactor
from engine.steps.base import StepContext, get_step_type
from tests.fixtures.s3server import S3Server
from tests.helpers import in_thread, step_context


def make_ctx(
    dry_run: bool = False, redactor: Redactor | None = None, later: float = 0.0
) -> StepContext:
    """A step context on localhost; `later` seconds moves its clock into the future
    (S3 keeps LastModified itself: the objects age without the test sleeping)."""
    ctx = step_context("t", 60, dry_run, redactor=redactor)
    ctx.now = lambda: datetime.now(UTC) + timedelta(seconds=later)
    return ctx


def s3(server: S3Server, bucket: str, ctx: StepContext | None = None, **body: Any) -> dict:
    step = get_step_type("s3")
    spec = step.Spec.model_validate(
        {
            "bucket": bucket,
            "endpoint": server.endpoint,
            "region": server.region,
            "access_key": server.access_key,
            "secret_key": server.secret_key,
            **body,
        }
    )
    data = step.run(spec, ctx or make_ctx())
    assert step.failure(spec, data) is None
    return data


def keys_in(server: S3Server, bucket: str, prefix: str = "") -> list[str]:
    response = server.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for o in response.get("Contents", []))


def test_put_file_then_head_get_list_delete(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    source = tmp_path / "dump.sql"
    source.write_bytes(b"CREATE TABLE t (id int);\n" * 1000)
    put = s3(s3_server, s3_bucket, action="put", key="db/dump.sql", file=str(source))
    assert put["size"] == source.stat().st_size
    assert put["uploaded"] == source.stat().st_size
    assert put["etag"] == hashlib.md5(source.read_bytes()).hexdigest()
    assert put["last_modified"].endswith("Z")
    assert put["content_type"] == "application/sql"

    head = s3(s3_server, s3_bucket, action="head", key="db/dump.sql")
    assert head["size"] == put["size"]
    assert head["etag"] == put["etag"]

    target = tmp_path / "out" / "copy.sql"
    target.parent.mkdir()
    got = s3(s3_server, s3_bucket, action="get", key="db/dump.sql", file=str(target))
    assert target.read_bytes() == source.read_bytes()
    assert got["size"] == put["size"]
    assert not [p for p in target.parent.iterdir() if ".part-" in p.name]

    s3(s3_server, s3_bucket, action="put", key="other/x.txt", file=str(source))
    listed = s3(s3_server, s3_bucket, action="list", prefix="db/")
    assert [o["key"] for o in listed["objects"]] == ["db/dump.sql"]
    assert listed["count"] == 1
    assert listed["total_size"] == put["size"]
    assert listed["objects"][0]["etag"] == put["etag"]
    assert listed["newest"]["key"] == "db/dump.sql"
    assert listed["newest"]["age_seconds"] >= 0
    everything = s3(s3_server, s3_bucket, action="list")
    assert everything["count"] == 2
    limited = s3(s3_server, s3_bucket, action="list", limit=1)
    assert limited["count"] == 1 and limited["truncated"] is True

    deleted = s3(s3_server, s3_bucket, action="delete", key="db/dump.sql")
    assert deleted["deleted"] == ["db/dump.sql"]
    assert keys_in(s3_server, s3_bucket) == ["other/x.txt"]
    again = s3(s3_server, s3_bucket, action="delete", key="db/dump.sql")
    assert again["deleted"] == []


def test_get_into_a_host_file(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    payload = os.urandom(3 << 20)
    s3_server.client().put_object(Bucket=s3_bucket, Key="blob.bin", Body=payload)
    dest = tmp_path / "restored.bin"
    got = s3(s3_server, s3_bucket, action="get", key="blob.bin", to_host=str(dest))
    assert dest.read_bytes() == payload
    assert got["size"] == len(payload)
    assert got["to_host"] == str(dest)


def test_put_from_host_small(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    source = tmp_path / "app.log"
    source.write_text("line\n" * 100)
    put = s3(s3_server, s3_bucket, action="put", key="logs/app.log", from_host=str(source))
    assert put["size"] == source.stat().st_size
    body = s3_server.client().get_object(Bucket=s3_bucket, Key="logs/app.log")["Body"].read()
    assert body == source.read_bytes()


def test_missing_host_file_is_a_step_error(s3_server: S3Server, s3_bucket: str) -> None:
    with pytest.raises(StepError, match="No such file"):
        s3(s3_server, s3_bucket, action="put", key="k", from_host="/nonexistent/file")


def test_no_such_key_and_bucket(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    with pytest.raises(ServiceError) as info:
        s3(s3_server, s3_bucket, action="get", key="nope.txt", file=str(tmp_path / "x"))
    assert info.value.code == "NoSuchKey"
    assert f"s3://{s3_bucket}/nope.txt does not exist" in str(info.value)
    assert not (tmp_path / "x").exists()

    with pytest.raises(ServiceError) as info:
        s3(s3_server, s3_bucket, action="head", key="nope.txt")
    assert info.value.code == "NoSuchKey"

    with pytest.raises(ServiceError) as info:
        s3(s3_server, "no-such-bucket-rb", action="list")
    assert info.value.code == "NoSuchBucket"
    assert "no-such-bucket-rb" in str(info.value)

    source = tmp_path / "f"
    source.write_text("x")
    with pytest.raises(ServiceError) as info:
        s3(s3_server, "no-such-bucket-rb", action="put", key="k", file=str(source))
    assert info.value.code == "NoSuchBucket"


def test_unreachable_endpoint_never_shows_credentials(s3_bucket: str) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        dead = S3Server(endpoint=f"http://127.0.0.1:{port}")
        redactor = Redactor()
        with pytest.raises(ServiceError) as info:
            s3(dead, s3_bucket, ctx=make_ctx(redactor=redactor), action="list")
    assert info.value.code == "EndpointUnreachable"
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message
    assert dead.secret_key not in message and dead.access_key not in message
    assert redactor.text(dead.secret_key) == "***"


def test_prune_keep_last_only(s3_server: S3Server, s3_bucket: str) -> None:
    client = s3_server.client()
    for i in range(1, 6):
        client.put_object(Bucket=s3_bucket, Key=f"backups/db-{i:03d}.dump", Body=b"x" * i)
    client.put_object(Bucket=s3_bucket, Key="elsewhere/keep.me", Body=b"y")
    data = s3(s3_server, s3_bucket, action="prune", prefix="backups/", keep_last=2)
    # Same-second uploads are ordered by key: 004 and 005 are the newest two.
    assert sorted(data["deleted"]) == [f"backups/db-{i:03d}.dump" for i in (1, 2, 3)]
    assert sorted(data["kept"]) == ["backups/db-004.dump", "backups/db-005.dump"]
    assert [o["key"] for o in data["objects"]] == sorted(data["kept"])
    assert data["deleted_size"] == 1 + 2 + 3
    assert keys_in(s3_server, s3_bucket) == [
        "backups/db-004.dump",
        "backups/db-005.dump",
        "elsewhere/keep.me",
    ]


def test_prune_older_than_with_keep_last(s3_server: S3Server, s3_bucket: str) -> None:
    # The server's own LastModified, read back and judged against the step's clock:
    # what is older than what with equal ages is test_select_prune_rules' job.
    client = s3_server.client()
    for name in ("a", "b", "c", "d", "e"):  # in this order: e is the newest
        client.put_object(Bucket=s3_bucket, Key=f"bk/{name}", Body=b"x")

    # Just written: younger than an hour, so nothing goes, whatever keep_last says.
    data = s3(s3_server, s3_bucket, action="prune", prefix="bk/", older_than="1h", keep_last=0)
    assert data["deleted"] == []
    assert len(data["kept"]) == 5

    # Two hours later all are old; keep_last 3 protects the three newest.
    two_hours = make_ctx(later=7200)
    data = s3(
        s3_server, s3_bucket, ctx=two_hours, action="prune", prefix="bk/", older_than="1h",
        keep_last=3,
    )  # fmt: skip
    assert sorted(data["deleted"]) == ["bk/a", "bk/b"]
    assert keys_in(s3_server, s3_bucket) == ["bk/c", "bk/d", "bk/e"]

    # older_than alone: every old one goes.
    data = s3(s3_server, s3_bucket, ctx=two_hours, action="prune", prefix="bk/", older_than="1h")
    assert sorted(data["deleted"]) == ["bk/c", "bk/d", "bk/e"]
    assert keys_in(s3_server, s3_bucket) == []


def test_prune_in_dry_run_deletes_nothing(s3_server: S3Server, s3_bucket: str) -> None:
    client = s3_server.client()
    for i in range(3):
        client.put_object(Bucket=s3_bucket, Key=f"p/{i}", Body=b"x")
    data = s3(
        s3_server, s3_bucket, ctx=make_ctx(dry_run=True), action="prune", prefix="p/", keep_last=1
    )
    assert data["deleted"] == []
    assert data["would_delete"] == ["p/1", "p/0"]
    assert keys_in(s3_server, s3_bucket) == ["p/0", "p/1", "p/2"]


def test_prune_deletes_in_batches_of_1000(s3_server: S3Server, s3_bucket: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    client = s3_server.client()
    keys = [f"many/{i:05d}" for i in range(1003)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=s3_bucket, Key=k, Body=b""), keys[:-2]))
    # The two to keep are the newest: written after the others have all finished,
    # so no older LastModified; within one second, the later key counts as newer.
    for key in keys[-2:]:
        client.put_object(Bucket=s3_bucket, Key=key, Body=b"")
    data = s3(s3_server, s3_bucket, action="prune", prefix="many/", keep_last=2)
    assert len(data["deleted"]) == 1001
    remaining = [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket)
        for o in page.get("Contents", [])
    ]
    assert sorted(remaining) == sorted(data["kept"]) == ["many/01001", "many/01002"]


SIZE_MIB = 80  # more than twice what 4 parts of 5 MiB and boto3's buffers take

MEMORY_PROBE = textwrap.dedent(
    """
    import json, resource, sys
    from engine.connections.local import LocalConnection
    from engine.inventory.host import localhost
    from engine.redaction import Redactor
    from engine.steps.base import StepContext, get_step_type

    endpoint, bucket, path, access, secret = sys.argv[1:6]
    step = get_step_type("s3")
    spec = step.Spec.model_validate({
        "action": "put", "bucket": bucket, "key": "big.bin", "from_host": path,
        "part_size": "5MiB",
        "endpoint": endpoint, "region": "us-east-1",
        "access_key": access, "secret_key": secret,
    })
    host = localhost()
    ctx = StepContext(host=host, step_id="big", timeout=300, dry_run=False,
                      redactor=Redactor(), get_connection=lambda: LocalConnection(host))
    import boto3, botocore.config  # imports are not the transfer's memory
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    data = step.run(spec, ctx)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"growth_kib": after - before, "before_kib": before, "size": data["size"]}))
    """
)


def test_from_host_upload_streams_with_memory_bounded_by_its_parts(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    source = tmp_path / "big.bin"
    digest = hashlib.sha256()
    block = os.urandom(1 << 20)
    with open(source, "wb") as out:
        for i in range(SIZE_MIB):
            chunk = i.to_bytes(4, "big") + block[4:]  # every MiB differs
            out.write(chunk)
            digest.update(chunk)
    size = source.stat().st_size
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            MEMORY_PROBE,
            s3_server.endpoint,
            s3_bucket,
            str(source),
            s3_server.access_key,
            s3_server.secret_key,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["size"] == size
    growth_mib = report["growth_kib"] / 1024
    print(f"peak RSS growth: {growth_mib:.1f} MiB (from {report['before_kib'] // 1024} MiB)")
    # 4 parts of 5 MiB in memory, and boto3's own buffers: far below the file's size.
    assert growth_mib < SIZE_MIB / 2, f"peak RSS grew by {growth_mib:.0f} MiB for {SIZE_MIB} MiB"

    downloaded = hashlib.sha256()
    body = s3_server.client().get_object(Bucket=s3_bucket, Key="big.bin")["Body"]
    for chunk in iter(lambda: body.read(1 << 20), b""):
        downloaded.update(chunk)
    assert downloaded.hexdigest() == digest.hexdigest()
    s3_server.client().delete_object(Bucket=s3_bucket, Key="big.bin")


class _TrickleStream:
    """A pipe-like stream: every read returns at most 64 KiB, as SSH channels do."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        size = len(self._data) if size is None or size < 0 else size
        chunk = bytes(self._data[self._pos : self._pos + min(size, 64 << 10)])
        self._pos += len(chunk)
        return chunk


class _TrickleConnection(LocalConnection):
    def __init__(self, data: bytes) -> None:
        super().__init__(localhost())
        self._payload = data

    @contextlib.contextmanager
    def get(self, path: str) -> Iterator[Any]:
        yield _TrickleStream(self._payload)


def test_from_host_short_reads_still_make_full_parts(s3_server: S3Server, s3_bucket: str) -> None:
    payload = os.urandom(12 << 20)
    conn = _TrickleConnection(payload)
    ctx = make_ctx()
    ctx.get_connection = lambda: conn
    put = s3(
        s3_server, s3_bucket, ctx=ctx, action="put", key="t.bin", from_host="/x", part_size="5MiB"
    )
    assert put["size"] == len(payload)
    assert put["etag"].endswith("-3")  # three parts: 5 + 5 + 2 MiB
    body = s3_server.client().get_object(Bucket=s3_bucket, Key="t.bin")["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(payload).digest()


# ------------------------------------------------ the operator's second Ctrl-C


def test_second_ctrl_c_stops_an_upload_and_aborts_it(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    import threading

    from engine.execution.cancel import Cancellers

    fifo = tmp_path / "dump.fifo"  # a host file that is still being written
    os.mkfifo(fifo)
    first_part_written, cancel_fired = threading.Event(), threading.Event()

    def writer() -> None:
        with contextlib.suppress(BrokenPipeError), open(fifo, "wb") as out:
            out.write(b"a" * (6 << 20))  # one 5 MiB part and some of the next
            out.flush()
            first_part_written.set()
            cancel_fired.wait(30)
            # The rest of the second part: its read returns, and the read of
            # the third finds the cancel (a transfer stops between parts).
            out.write(b"b" * (4 << 20))
            out.flush()
            time.sleep(30)  # still "producing": only the cancel ends the upload

    threading.Thread(target=writer, daemon=True).start()
    cancellers = Cancellers()
    ctx = step_context("upload", 120, cancellable=cancellers.scope)
    body = {"action": "put", "key": "dump.sql", "from_host": str(fifo), "part_size": "5MiB"}
    step, errors = in_thread(lambda: s3(s3_server, s3_bucket, ctx, **body))
    assert first_part_written.wait(30)
    time.sleep(0.5)  # the first part is on its way
    cancellers.cancel_all()
    cancel_fired.set()
    step.join(20)
    assert not step.is_alive(), "the upload went on after cancel_all()"
    [error] = errors
    assert isinstance(error, ServiceError) and error.code == "cancelled", error
    assert "interrupted (Ctrl-C)" in str(error)
    client = s3_server.client()
    assert keys_in(s3_server, s3_bucket) == []  # no object
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_an_s3_step_after_the_second_ctrl_c_sends_nothing(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    from engine.execution.cancel import Cancellers

    cancellers = Cancellers()
    cancellers.cancel_all()
    ctx = step_context("late", 60, cancellable=cancellers.scope)
    source = tmp_path / "f"
    source.write_bytes(b"x")
    with pytest.raises(ServiceError, match="interrupted"):
        s3(s3_server, s3_bucket, ctx, action="put", key="late", file=str(source))
    assert keys_in(s3_server, s3_bucket) == []
    # Single requests too: nothing is asked of the server once the Ctrl-C came.
    s3_server.client().put_object(Bucket=s3_bucket, Key="kept", Body=b"x")
    for body in ({"action": "list"}, {"action": "delete", "key": "kept"}):
        with pytest.raises(ServiceError, match=r"\[cancelled\]: \w+ s3://"):
            s3(s3_server, s3_bucket, ctx, **body)
    assert keys_in(s3_server, s3_bucket) == ["kept"]
