"""known_hosts is parsed once per file version, however many hosts connect at once."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import paramiko
import pytest

from engine import filecache
from engine.connections.ssh import hostkeys as ssh_hostkeys


@pytest.fixture
def known_hosts(tmp_path: Path) -> Path:
    key = tmp_path / "host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    kind, blob = (tmp_path / "host_key.pub").read_text().split()[:2]
    path = tmp_path / "known_hosts"
    path.write_text("".join(f"[10.0.0.{i}]:22 {kind} {blob}\n" for i in range(1, 201)))
    return path


def test_forks_connecting_at_once_share_one_parse(
    known_hosts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parses: list[str] = []
    real = paramiko.HostKeys

    def counting(filename: str | None = None) -> Any:
        parses.append(str(filename))
        return real(filename)

    monkeypatch.setattr(paramiko, "HostKeys", counting)
    filecache.clear()
    start = threading.Barrier(20)
    seen: list[Any] = []

    def connect() -> None:
        start.wait()
        seen.append(ssh_hostkeys._parsed(known_hosts))

    threads = [threading.Thread(target=connect) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(seen) == 20 and all(s is seen[0] for s in seen)
    assert parses == [str(known_hosts)]
    assert seen[0].lookup("[10.0.0.7]:22") is not None

    # A changed file (accept-new appended a host) is parsed again, once.
    with known_hosts.open("a") as out:
        out.write(known_hosts.read_text().splitlines()[0].replace("10.0.0.1]", "10.0.1.1]") + "\n")
    again = ssh_hostkeys._parsed(known_hosts)
    assert again is not seen[0] and again.lookup("[10.0.1.1]:22") is not None
    assert ssh_hostkeys._parsed(known_hosts) is again
    assert len(parses) == 2
