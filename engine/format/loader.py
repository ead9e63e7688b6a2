"""Runbook file → validated Runbook, or every problem of the file at once.

Validation is whole before execution (docs/format.md, safety): schema, unknown keys (with a
closest-name suggestion), step types, duplicate ids, templates that do not
parse, names a template cannot see, and references to step ids or params that
do not exist. Included runbooks are loaded and checked here too, so an include
cannot fail halfway through a run for a reason knowable up front.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from engine.errors import Problem, RunbookInvalid, TemplateError, did_you_mean
from engine.steps.base import StepType, get_step_type, step_types
from engine.templating import (
    NAMESPACES,
    compile_expression,
    compile_template,
    is_template,
    references,
)

from .model import (
    COMMON_FIELDS,
    LOOP_NAMES,
    THRESHOLD_OP,
    LoopUntil,
    Retry,
    Runbook,
    RunbookHeader,
    Step,
    StepCommon,
    snake_case,
)
from .source import PathKey, YamlDoc, format_path, load_yaml_file

# Fields of a step whose value is a bare expression, and which may see `result`.
_EXPR_FIELDS = {"when": False, "until": True, "failed_when": True}
_TEMPLATE_FIELDS = ("name", "confirm", "message", "description")
_VARS_NAMES = NAMESPACES - {"steps", "result"}


def load_runbook(path: str | Path) -> Runbook:
    """Load and validate a runbook file. Raises RunbookInvalid with every problem."""
    problems: list[Problem] = []
    runbook = _FileLoader(Path(path), (), problems).load()
    if problems or runbook is None:
        # A file included twice (or an include's error met twice) is one problem.
        problems = list({p.render(): p for p in problems}.values())
        problems.sort(
            key=lambda p: (
                p.location.file != str(path),
                p.location.file,
                p.location.line,
                p.location.column,
            )
        )
        raise RunbookInvalid(problems)
    return runbook


class _FileLoader:
    def __init__(self, path: Path, stack: tuple[Path, ...], problems: list[Problem]) -> None:
        self.path = path
        self.stack = stack
        self.problems = problems
        self.doc: YamlDoc | None = None
        self.step_ids: dict[str, PathKey] = {}
        self.param_names: set[str] = set()

    # ------------------------------------------------------------ entry point

    def load(self) -> Runbook | None:
        doc = self.doc = load_yaml_file(self.path)
        if doc.problems:
            self.problems.extend(doc.problems)
            return None
        data = doc.data
        if not isinstance(data, dict):
            self.problems.append(
                doc.problem((), "a runbook is a mapping with `runbook:` and `steps:`")
            )
            return None
        header = self._validate(RunbookHeader, data, ())
        if header is None:
            # Keep going with what can be read, so the author sees every problem.
            header = RunbookHeader.model_construct(
                runbook=str(data.get("runbook", "invalid")),
                params={},
                vars={},
                steps=[],
                rescue=[],
                always=[],
            )
        raw_params = data.get("params")
        self.param_names = set(raw_params) if isinstance(raw_params, dict) else set()
        self._check_param_defaults(header)
        sections: dict[str, list[Step]] = {}
        for section in ("steps", "rescue", "always"):
            raw = data.get(section, [])
            sections[section] = self._steps(raw, (section,)) if isinstance(raw, list) else []
        runbook = Runbook(
            header=header,
            path=str(self.path),
            text=doc.text,
            steps=sections["steps"],
            rescue=sections["rescue"],
            always=sections["always"],
            digest=hashlib.sha256(doc.text.encode()).hexdigest(),
        )
        self._check_vars(data.get("vars"))
        for step in runbook.all_steps():
            self._check_step_templates(step)
        return runbook

    # ---------------------------------------------------------------- helpers

    def _problem(self, path: PathKey, message: str, hint: str = "", key: bool = False) -> None:
        assert self.doc is not None
        self.problems.append(self.doc.problem(path, message, hint, key=key))

    def _validate(self, model: type[BaseModel], raw: Any, path: PathKey) -> Any:
        instance, _templated = self._validate_lenient(model, raw, path)
        return instance

    def _validate_lenient(
        self, model: type[BaseModel], raw: Any, path: PathKey
    ) -> tuple[Any, bool]:
        """Validate; errors on values that are templates wait until rendering.

        Returns (instance or None, whether some value is only known after rendering).
        """
        try:
            return model.model_validate(raw), False
        except ValidationError as exc:
            templated = False
            seen: set[str] = set()
            for err in exc.errors():
                loc, value_is_template = _resolve_loc(raw, err["loc"], err["type"])
                if value_is_template and err["type"] not in ("missing", "extra_forbidden"):
                    templated = True
                    continue
                full = (*path, *loc)
                key = format_path(full) + err["type"]
                if key in seen:
                    continue
                seen.add(key)
                self._pydantic_problem(err, full, model)
            return None, templated

    def _validate_common(self, raw: dict[str, Any], path: PathKey) -> StepCommon | None:
        """The common fields are validated strictly: the executor reads them as
        typed values (retry counts, timeouts) before anything is rendered, so a
        template there is an error now rather than a field silently dropped."""
        try:
            return StepCommon.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                loc, value_is_template = _resolve_loc(raw, err["loc"], err["type"])
                full = (*path, *loc)
                if value_is_template and err["type"] not in ("missing", "extra_forbidden"):
                    self._problem(
                        full,
                        f"`{format_path(loc)}` cannot be a template: it is needed before the"
                        " step is rendered; give a literal value",
                    )
                else:
                    self._pydantic_problem(err, full, StepCommon)
            return None

    def _pydantic_problem(self, err: Any, path: PathKey, model: type[BaseModel]) -> None:
        kind = err["type"]
        if kind == "extra_forbidden":
            name = str(path[-1])
            allowed = {(f.alias or n) for n, f in model.model_fields.items()}
            self._problem(path, f"unknown key `{name}`", did_you_mean(name, allowed), key=True)
        elif kind == "missing":
            self._problem(path[:-1], f"missing required key `{path[-1]}`")
        else:
            message = err["msg"].removeprefix("Value error, ")
            self._problem(path, message)

    def _check_param_defaults(self, header: RunbookHeader) -> None:
        from .params import coerce_param

        for name, param in (header.params or {}).items():
            if param.default is None:
                continue
            try:
                coerce_param(name, param, param.default)
            except Exception as exc:
                self._problem(("params", name, "default"), str(exc))

    # ------------------------------------------------------------------ steps

    def _steps(self, raw_steps: list[Any], path: PathKey) -> list[Step]:
        out = []
        for i, raw in enumerate(raw_steps):
            step = self._step(raw, (*path, i))
            if step is not None:
                out.append(step)
        return out

    def _step(self, raw: Any, path: PathKey) -> Step | None:
        assert self.doc is not None
        if not isinstance(raw, dict):
            self._problem(path, "a step is a mapping with `name:` and one step type")
            return None
        type_name = self._type_of(raw, path)
        if type_name is None:
            return None
        common, retry_template = self._common_of(raw, type_name, path)
        try:
            stype = get_step_type(type_name)
        except Exception as exc:  # an entry point that fails to import
            self._problem((*path, type_name), f"step type `{type_name}` cannot be loaded: {exc}")
            # Keep its id known, so references to it do not pile up as more errors.
            self.step_ids.setdefault(common.id or snake_case(common.name or "step"), path)
            return None
        body = stype.normalize(raw[type_name])
        spec, templated = self._validate_lenient(stype.Spec, body, (*path, type_name))
        if _has_templates(body, stype):
            templated = True  # rendered per host, then validated again
        step = Step(
            common=common,
            type=type_name,
            body=body,
            id=self._claim_id(common, path),
            path=path,
            file=str(self.path),
            line=self.doc.location(path).line,
            retry_template=retry_template,
            spec=None if templated else spec,
        )
        if type_name == "block" and isinstance(body, dict):
            for section in ("steps", "rescue", "always"):
                raw_list = body.get(section, [])
                if isinstance(raw_list, list):
                    step.children[section] = self._steps(raw_list, (*path, "block", section))
        elif type_name == "include" and spec is not None:
            step.included = self._include(spec.runbook, spec.params, (*path, "include"))
        return step

    def _type_of(self, raw: dict[str, Any], path: PathKey) -> str | None:
        """The step's one type key; None (with the problem recorded) if it has not one."""
        # `in step_types` finds built-ins without reading plugins' entry points (~10 ms);
        # only a name that is not built in makes it look further.
        type_keys = [k for k in raw if k not in COMMON_FIELDS and k in step_types]
        unknown = [k for k in raw if k not in COMMON_FIELDS and k not in step_types]
        if not type_keys and "assert" in raw:
            type_keys = ["assert"]  # a step whose only type-like key is `assert`
        for key in unknown:
            hint = did_you_mean(key, COMMON_FIELDS | set(step_types.names()))
            self._problem((*path, key), f"unknown key `{key}`", hint, key=True)
        if len(type_keys) > 1:
            found = ", ".join(f"`{k}`" for k in type_keys)
            self._problem(path, f"a step has exactly one type; this one has {found}")
            return None
        if not type_keys:
            if not unknown:
                types = ", ".join(step_types.names())
                self._problem(path, f"step has no type: add one of {types}")
            return None
        return type_keys[0]

    def _common_of(
        self, raw: dict[str, Any], type_name: str, path: PathKey
    ) -> tuple[StepCommon, dict[str, Any] | None]:
        """The common fields, validated, and a `retry:` whose values are templates
        (rendered per host when the step runs; checked here as far as literal)."""
        common_raw = {k: v for k, v in raw.items() if k in COMMON_FIELDS and k != type_name}
        retry_template = None
        retry_raw = common_raw.get("retry")
        if isinstance(retry_raw, dict) and any(is_template(v) for v in retry_raw.values()):
            retry_template = retry_raw
            common_raw = {**common_raw, "retry": {}}
            literal = {k: v for k, v in retry_raw.items() if not is_template(v)}
            self._validate_lenient(Retry, literal, (*path, "retry"))
            for key, value in retry_raw.items():
                if is_template(value):
                    self._check_text(
                        value,
                        (*path, "retry", key),
                        expression=False,
                        allowed=NAMESPACES - {"result"},
                    )
        common = self._validate_common(common_raw, path)
        if common is None:
            common = StepCommon.model_construct(name=str(raw.get("name", "?")))
        if common.until is not None and common.retry is None and type_name != "wait":
            self._problem(
                (*path, "until"), "`until` needs `retry` (e.g. retry: {attempts: 10, delay: 5s})"
            )
        return common, retry_template

    def _claim_id(self, common: StepCommon, path: PathKey) -> str:
        """The step's id (`id:`, or its name in snake_case), refused if already used."""
        step_id = common.id or snake_case(common.name or "step")
        if step_id in self.step_ids:
            first = format_path(self.step_ids[step_id])
            self._problem(
                (*path, "id") if common.id else (*path, "name"),
                f"duplicate step id `{step_id}` (first used at {first})",
                "give one of them a unique `id:`",
            )
        else:
            self.step_ids[step_id] = path
        return step_id

    def _include(self, target: str, params: dict[str, Any], path: PathKey) -> Runbook | None:
        if is_template(target):
            self._problem((*path, "runbook"), "an include path cannot be a template")
            return None
        inc_path = (self.path.parent / target).resolve()
        if inc_path in self.stack or inc_path == self.path.resolve():
            self._problem((*path, "runbook"), f"include cycle: {target} includes itself")
            return None
        if not inc_path.is_file():
            self._problem((*path, "runbook"), f"included runbook {target!r} not found ({inc_path})")
            return None
        before = len(self.problems)
        child = _FileLoader(inc_path, (*self.stack, self.path.resolve()), self.problems).load()
        if child is None or len(self.problems) > before:
            return None
        declared = child.params
        for name in params:
            if name not in declared:
                hint = did_you_mean(name, set(declared))
                self._problem(
                    (*path, "params", name), f"{target} has no param `{name}`", hint, True
                )
        for name, p in declared.items():
            if p.required and p.default is None and name not in params:
                self._problem((*path, "params"), f"{target} requires param `{name}`")
        return child

    # -------------------------------------------------------------- templates

    def _check_vars(self, raw_vars: Any) -> None:
        if not isinstance(raw_vars, dict):
            return
        for name, value in raw_vars.items():
            for sub, text in _strings(value, ("vars", name)):
                self._check_text(text, sub, expression=False, allowed=_VARS_NAMES)

    def _check_step_templates(self, step: Step) -> None:
        common = step.common
        outer = NAMESPACES - {"result"}
        # A looped step's own fields also see the item (loop_var), loop_index, previous.
        looped = self._check_loop(step)
        base = outer | looped
        with_result = NAMESPACES | looped
        for field in _TEMPLATE_FIELDS:
            value = getattr(common, field, None)
            if isinstance(value, str):
                # The message of a failed `assert` on a result may quote that result.
                sees = field == "message" and bool(common.assert_) and step.type != "assert"
                allowed_here = with_result if sees else base
                self._check_text(value, (*step.path, field), expression=False, allowed=allowed_here)
        for field, sees_result in _EXPR_FIELDS.items():
            value = getattr(common, field, None)
            if isinstance(value, str):
                allowed = with_result if sees_result else base
                self._check_text(value, (*step.path, field), expression=True, allowed=allowed)
        for i, expr in enumerate(common.assert_ or []):
            self._check_text(expr, (*step.path, "assert", i), expression=True, allowed=with_result)
        for name, th in (common.thresholds or {}).items():
            tpath = (*step.path, "thresholds", name)
            self._check_text(th.value, (*tpath, "value"), expression=True, allowed=with_result)
            for level in ("warn", "critical"):
                bound = getattr(th, level)
                match = THRESHOLD_OP.match(bound) if isinstance(bound, str) else None
                if match and is_template(match[2]):
                    self._check_text(match[2], (*tpath, level), expression=False, allowed=base)
                elif match:
                    try:
                        float(match[2])
                    except ValueError:
                        self._problem(
                            (*tpath, level),
                            f"{match[2]!r} is neither a number nor a {{{{ template }}}}",
                        )
        stype = get_step_type(step.type)
        if not isinstance(step.body, dict):
            return
        for key, value in step.body.items():
            if key in stype.raw_fields:
                continue
            fpath = (*step.path, step.type, key)
            if key in stype.expression_fields:
                allowed = with_result if stype.result_in_expressions else base
                for sub, text in _strings(value, fpath):
                    self._check_text(text, sub, expression=True, allowed=allowed)
            else:
                for sub, text in _strings(value, fpath):
                    self._check_text(text, sub, expression=False, allowed=base)
        if step.type == "wait" and isinstance(step.body.get("check"), str):
            target = step.body["check"]
            if target not in self.step_ids:
                self._problem(
                    (*step.path, "wait", "check"),
                    f"unknown step id `{target}`",
                    did_you_mean(target, set(self.step_ids)),
                )

    def _check_loop(self, step: Step) -> frozenset[str]:
        """The loop's source checked; the names the looped step's templates gain."""
        loop = step.common.loop
        if loop is None:
            return frozenset()
        path = (*step.path, "loop")
        if step.type in ("block", "include"):
            self._problem(path, f"a {step.type} cannot loop: put `loop` on its steps")
        outer = NAMESPACES - {"result"}
        if isinstance(loop, LoopUntil):
            names = NAMESPACES | LOOP_NAMES | {step.common.loop_var}
            self._check_text(loop.until, (*path, "until"), expression=True, allowed=names)
        else:
            for sub, text in _strings(loop, path):
                self._check_text(text, sub, expression=False, allowed=outer)
        return LOOP_NAMES | {step.common.loop_var}

    def _check_text(
        self, text: str, path: PathKey, *, expression: bool, allowed: frozenset[str]
    ) -> None:
        if not expression and not is_template(text):
            return
        try:
            compiled = compile_expression(text) if expression else compile_template(text)
        except TemplateError as exc:
            self._problem(path, str(exc))
            return
        refs = references(compiled)
        for name in sorted(refs.names):
            if name in allowed:
                continue
            if name == "result":
                self._problem(
                    path,
                    "`result` is only available in until, failed_when, assert (and its"
                    " message) and a threshold's value",
                )
            elif name in NAMESPACES:
                self._problem(path, f"`{name}` is not available here")
            else:
                hint = did_you_mean(name, allowed) or "names are: " + ", ".join(sorted(allowed))
                self._problem(path, f"unknown name `{name}`", hint)
        if "steps" in refs.names or refs.steps:
            for ref in sorted(refs.steps):
                if ref not in self.step_ids:
                    self._problem(
                        path, f"unknown step id `{ref}`", did_you_mean(ref, set(self.step_ids))
                    )
        for ref in sorted(refs.params):
            if ref not in self.param_names:
                self._problem(
                    path, f"undeclared param `{ref}`", did_you_mean(ref, self.param_names)
                )


def _has_templates(body: Any, stype: StepType) -> bool:
    if isinstance(body, dict):
        skip = stype.expression_fields | stype.raw_fields
        return any(
            is_template(text)
            for k, v in body.items()
            if k not in skip
            for _, text in _strings(v, ())
        )
    return any(is_template(text) for _, text in _strings(body, ()))


def _strings(value: Any, path: PathKey) -> list[tuple[PathKey, str]]:
    """Every string inside `value`, with its path."""
    if isinstance(value, str):
        return [(path, value)]
    out: list[tuple[PathKey, str]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_strings(v, (*path, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_strings(v, (*path, i)))
    return out


def _resolve_loc(raw: Any, loc: tuple[Any, ...], kind: str) -> tuple[PathKey, bool]:
    """Follow a pydantic error location through the raw data.

    Pydantic puts union member tags ("str", "function-after[...]") into
    locations; parts that name nothing in the data are dropped, except the
    last part of a missing or unknown key. Returns the path, and whether the
    value there (or a parent) is a template, i.e. only known after rendering.
    """
    path: list[str | int] = []
    node = raw
    if is_template(node):
        return (), True
    for i, part in enumerate(loc):
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        ):
            node = node[part]
        else:
            if kind in ("missing", "extra_forbidden") and i == len(loc) - 1:
                path.append(part)
            continue
        path.append(part)
        if is_template(node):
            return tuple(path), True
    return tuple(path), False
