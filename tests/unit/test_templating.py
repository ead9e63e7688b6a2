"""Templates and expressions: native types, strictness, filters, static references."""

from __future__ import annotations

import pytest

from engine.errors import TemplateError
from engine.templating import (
    compile_expression,
    compile_template,
    evaluate,
    references,
    render_value,
)

CTX = {
    "params": {"n": 3, "name": "a b"},
    "vars": {"items": [1, 2]},
    "steps": {"q": {"rows": [{"values": 7, "count": 2}], "state": "ok"}},
}


def test_lone_expression_keeps_native_type() -> None:
    assert render_value("{{ params.n }}", CTX) == 3
    assert render_value("{{ vars.items + [3] }}", CTX) == [1, 2, 3]
    assert render_value("{{ {'a': params.n} }}", CTX) == {"a": 3}
    assert render_value("{{ params.n }}\n", CTX) == 3  # YAML block scalars end with a newline


def test_mixed_template_is_a_string() -> None:
    assert render_value("n={{ params.n }}", CTX) == "n=3"
    assert render_value("{{ params.n }} {{ params.n }}", CTX) == "3 3"


def test_plain_strings_are_not_templates() -> None:
    assert render_value("no braces {here}", CTX) == "no braces {here}"


def test_nested_values_are_rendered() -> None:
    assert render_value({"a": ["{{ params.n }}", "x"]}, CTX) == {"a": [3, "x"]}


def test_undefined_is_an_error() -> None:
    with pytest.raises(TemplateError, match="nope"):
        render_value("{{ params.nope }}", CTX)
    with pytest.raises(TemplateError):
        evaluate("missing_name > 1", CTX)


def test_mapping_keys_win_over_dict_methods() -> None:
    assert evaluate("steps.q.rows[0].values", CTX) == 7
    assert evaluate("steps.q.rows[0].count", CTX) == 2


def test_sandbox_blocks_unsafe_attributes() -> None:
    with pytest.raises(TemplateError):
        render_value("{{ params.__class__.__mro__ }}", CTX)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("params.name | quote", "'a b'"),
        ("3725 | duration", "1h 2m"),
        ("45 | duration", "45s"),
        ("90061 | duration", "1d 1h"),
        ("1610612736 | bytes", "1.5 GiB"),
        ("512 | bytes", "512 B"),
        ("{'b': 1, 'a': [2]} | to_json", '{"a": [2], "b": 1}'),
        ("'{\"x\": 5}' | from_json", {"x": 5}),
        ("0.9534 | pct", "95.3%"),
        ("5 | pct(20)", "25.0%"),
        ("1 | pct(0)", "0.0%"),
    ],
)
def test_filters(source: str, expected: object) -> None:
    assert evaluate(source, CTX) == expected


def test_expression_with_braces_is_rejected() -> None:
    with pytest.raises(TemplateError, match="without"):
        compile_expression("{{ params.n }}")


def test_syntax_errors_are_template_errors() -> None:
    with pytest.raises(TemplateError, match="cannot parse"):
        compile_template("{{ params.n ")
    with pytest.raises(TemplateError, match="cannot parse"):
        compile_expression("params.n ==")


def test_compiled_once() -> None:
    assert compile_template("x {{ params.n }}") is compile_template("x {{ params.n }}")
    assert compile_expression("params.n > 1") is compile_expression("params.n > 1")


def test_references_find_step_and_param_keys() -> None:
    refs = references(compile_template("{{ steps.a.rc }} {{ steps['b'].x }} {{ params.p }}"))
    assert refs.steps == {"a", "b"}
    assert refs.params == {"p"}
    assert refs.names == {"steps", "params"}


def test_templates_cannot_build_huge_values() -> None:
    # Compiling must not fold `'a' * 10**9` (3.9 GB during `runbook check`), and
    # rendering stops such products at a bound instead of exhausting memory.
    huge = compile_template("x{{ 'a' * 10**9 }}")  # returns: nothing was built
    for source in ("x{{ 'a' * 10**9 }}", "{{ (params,) * 999999999 }}", "{{ 2 ** 100000 }}"):
        with pytest.raises(TemplateError, match=r"limit|too large"):
            render_value(source, {"params": {}})
    with pytest.raises(TemplateError, match="more than"):
        render_value("{{ 'a' * 600000 + 'b' * 600000 }}", {})
    assert huge.source.startswith("x{{")
    # Ordinary arithmetic and repetition are untouched.
    assert render_value("{{ 2 ** 10 }}", {}) == 1024
    assert render_value("{{ 'ab' * 3 }}-{{ [1] * 2 }}-{{ 'x' + 'y' }}", {}) == "ababab-[1, 1]-xy"
