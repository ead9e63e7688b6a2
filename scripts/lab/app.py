#!/usr/bin/env python3
"""A stand-in web application for the runbook lab: what the library's
outage, error-rate and restart runbooks act on, as a real process with a
real access log.

    python3 scripts/lab/app.py start   --dir DIR --port PORT
    python3 scripts/lab/app.py stop    --dir DIR
    python3 scripts/lab/app.py restart --dir DIR --port PORT
    python3 scripts/lab/app.py status  --dir DIR    (exit 0 running, 3 stopped)
    python3 scripts/lab/app.py serve   --dir DIR --port PORT   (foreground)

What it serves:
  /health     200 {"status": "ok", ...}; 503 while DIR/unhealthy exists
  /metrics    Prometheus text: http_requests_total{status="..."} since start
              (scrapes not counted), and app_up 1
  anything    200, or 500 for a share of requests given in DIR/error-ratio
              (a number from 0 to 1, read at each request)

Each request is written to DIR/access.log in nginx's "combined" format
with the request time appended, and the app's own messages to DIR/app.log,
so the runbooks read what they would read in production. Only the standard
library: the lab must start on a fresh machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _State:
    """Counts shared by the request threads (for /metrics)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.lock = threading.Lock()
        self.counts: dict[int, int] = {}
        self.started = time.time()

    def count(self, status: int) -> None:
        with self.lock:
            self.counts[status] = self.counts.get(status, 0) + 1

    def error_ratio(self) -> float:
        try:
            return float((self.dir / "error-ratio").read_text().strip() or 0)
        except (OSError, ValueError):
            return 0.0


def _handler(state: _State) -> type[BaseHTTPRequestHandler]:
    access = open(state.dir / "access.log", "a", buffering=1)  # noqa: SIM115 - lives with the server

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            """The access log below replaces http.server's stderr lines."""

        def do_GET(self) -> None:
            started = time.monotonic()
            path = self.path.split("?", 1)[0]
            if path == "/health":
                if (state.dir / "unhealthy").exists():
                    status, body = 503, {"status": "unhealthy"}
                else:
                    uptime = int(time.time() - state.started)
                    status, body = 200, {"status": "ok", "uptime_s": uptime}
                data, ctype = json.dumps(body).encode(), "application/json"
            elif path == "/metrics":
                status, data, ctype = 200, self._metrics(), "text/plain; version=0.0.4"
            elif random.random() < state.error_ratio():
                status, data, ctype = 500, b'{"error": "internal"}', "application/json"
            else:
                status, data, ctype = 200, b'{"ok": true}', "application/json"
            if path != "/metrics":  # scrapes are not the traffic they measure
                state.count(status)
            # Logged before the answer leaves: a client's next request is then
            # always logged after this one (the log is in request order).
            stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
            agent = self.headers.get("User-Agent", "-")
            seconds = time.monotonic() - started
            access.write(
                f'{self.client_address[0]} - - [{stamp}] "{self.command} {self.path} '
                f'{self.request_version}" {status} {len(data)} "-" "{agent}" {seconds:.3f}\n'
            )
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _metrics(self) -> bytes:
            with state.lock:
                counts = dict(state.counts)
            lines = [
                "# HELP http_requests_total Requests served, by status.",
                "# TYPE http_requests_total counter",
            ]
            lines += [f'http_requests_total{{status="{s}"}} {n}' for s, n in sorted(counts.items())]
            lines += ["# TYPE app_up gauge", "app_up 1", ""]
            return "\n".join(lines).encode()

    return Handler


def serve(directory: Path, port: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    state = _State(directory)
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(state))
    server.daemon_threads = True
    log = open(directory / "app.log", "a", buffering=1)  # noqa: SIM115 - the process's log
    log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} INFO started on port {port}\n")
    signal.signal(signal.SIGTERM, lambda *_: (log.write("INFO stopping\n"), sys.exit(0)))
    try:
        server.serve_forever()
    finally:
        server.server_close()


def _pid(directory: Path) -> int | None:
    """The running app's pid, or None (a stale pid file is no app)."""
    try:
        pid = int((directory / "app.pid").read_text().strip())
        os.kill(pid, 0)
        # A zombie waits for its reaper (slow on some inits): it serves nothing.
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return None
    return None if state == "Z" else pid


def start(directory: Path, port: int) -> int:
    if _pid(directory) is not None:
        print("already running")
        return 0
    directory.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, __file__, "serve", "--dir", str(directory), "--port", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=open(directory / "app.log", "a"),  # noqa: SIM115 - handed to the child
        start_new_session=True,  # not killed with the shell step that started it
    )
    (directory / "app.pid").write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # up when it answers
        if proc.poll() is not None:
            print(f"the app exited at start (rc {proc.returncode}); see {directory / 'app.log'}")
            return 1
        try:
            import urllib.request

            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read()
            print(f"started pid {proc.pid} on port {port}")
            return 0
        except OSError:
            time.sleep(0.05)
    print("the app did not answer within 10s")
    return 1


def stop(directory: Path) -> int:
    pid = _pid(directory)
    if pid is None:
        print("not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _pid(directory) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
        try:  # reap it when it is our child (tests); elsewhere init does
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    (directory / "app.pid").unlink(missing_ok=True)
    print(f"stopped pid {pid}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "restart", "status", "serve"])
    parser.add_argument("--dir", type=Path, required=True, help="state, pid file and logs")
    parser.add_argument("--port", type=int, default=18080)
    args = parser.parse_args()
    if args.action == "serve":
        serve(args.dir, args.port)
        return 0
    if args.action == "status":
        pid = _pid(args.dir)
        print(f"running pid {pid}" if pid else "stopped")
        return 0 if pid else 3  # as `systemctl status` and LSB scripts say it
    if args.action == "stop":
        return stop(args.dir)
    if args.action == "restart":
        stop(args.dir)
    return start(args.dir, args.port)


if __name__ == "__main__":
    sys.exit(main())
