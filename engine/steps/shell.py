"""`shell`: a command on the host, over the host's connection."""

from __future__ import annotations

import json
import shlex
from typing import Any, Literal

from pydantic import model_validator

from engine.connections.base import Command
from engine.errors import StepError

from .base import StepContext, StepSpec, StepType


class ShellSpec(StepSpec):
    cmd: str | None = None
    argv: list[str | int | float] | None = None  # numbers from templates are fine
    stdin: str | None = None
    env: dict[str, str | int | float | bool] = {}
    cwd: str | None = None
    become: str | None = None
    parse: Literal["json"] | None = None

    @model_validator(mode="after")
    def _one_command(self) -> ShellSpec:
        if (self.cmd is None) == (self.argv is None):
            raise ValueError("give exactly one of `cmd` (run by /bin/sh -c) or `argv` (no shell)")
        if self.argv is not None and not self.argv:
            raise ValueError("`argv` cannot be empty")
        return self


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


class ShellStep(StepType):
    name = "shell"
    Spec = ShellSpec

    def normalize(self, body: Any) -> Any:
        # `shell: "df -h"` and `shell: [df, -h]` are shorthands, as in Ansible.
        if isinstance(body, str):
            return {"cmd": body}
        if isinstance(body, list):
            return {"argv": body}
        return body

    def run(self, spec: ShellSpec, ctx: StepContext) -> dict[str, Any]:
        command = Command(
            cmd=spec.cmd,
            argv=[str(a) for a in spec.argv] if spec.argv is not None else None,
            stdin=spec.stdin.encode() if spec.stdin is not None else None,
            env={k: _env_value(v) for k, v in spec.env.items()},
            cwd=spec.cwd,
            become=spec.become,
            output=ctx.output,
        )
        out = ctx.connection.run(command, timeout=ctx.timeout)
        stdout = _text(out.stdout)
        data: dict[str, Any] = {
            "rc": out.rc,
            "stdout": stdout,
            "stderr": _text(out.stderr),
            "stdout_lines": stdout.splitlines(),
        }
        omitted = {"stdout": out.stdout_omitted, "stderr": out.stderr_omitted}
        if any(omitted.values()):
            data["omitted"] = {k: n for k, n in omitted.items() if n}
        if ctx.output.files is not None:
            data["output_files"] = {
                "stdout": str(ctx.output.files[0]),
                "stderr": str(ctx.output.files[1]),
            }
        if spec.parse == "json":
            try:
                data["json"] = json.loads(stdout)
            except json.JSONDecodeError as exc:
                if out.rc != 0:
                    return data  # the command failed: its rc and stderr say why, not this
                reason = f"stdout is not JSON ({exc.msg} at char {exc.pos})"
                if out.stdout_omitted:
                    reason += "; it was cut to the output limit (raise --output-limit)"
                raise StepError(reason, data=data) from None
        return data

    def failure(self, spec: ShellSpec, data: dict[str, Any]) -> str | None:
        if data.get("rc") == 0:
            return None
        last = (data.get("stderr") or "").strip().splitlines()[-1:] or [""]
        return f"command exited with rc {data.get('rc')}" + (f": {last[0]}" if last[0] else "")

    def describe(self, spec: ShellSpec) -> str:
        # argv quoted as a shell would need it: `sh -c 'test -d "$1"' sh /tmp/x`.
        text = spec.cmd if spec.cmd is not None else shlex.join(map(str, spec.argv or []))
        return f"$ {text}" + (f"  (as {spec.become})" if spec.become else "")


def _env_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
