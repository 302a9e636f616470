"""The SWITCH expression language: a table of conditions, errors with columns, hostile input."""

from __future__ import annotations

import contextlib
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from easysched_es.core import expr

VALUES = {"rows": "42", "name": "etl_daily", "zero": "0", "big": "12345678901234567890", "word": "abc",
          "neg": "-3.5", "empty": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${rows} > 1000000", False),
        ("${rows} == 42", True),
        ("${rows} == 42.0", True),
        ("${rows} != 41", True),
        ("${rows} >= 42 and ${rows} <= 42", True),
        ("${zero} == 0 or ${rows} < 0", True),
        ("not ${rows} == 42", False),
        ("not (${rows} == 42 or false)", False),
        ("${big} > 12345678901234567889", True),  # exact decimals, no float rounding
        ("${neg} < -3", True),
        ("${name} == 'etl_daily'", True),
        ('${name} == "etl_daily"', True),
        ("${name} in ['a', 'etl_daily']", True),
        ("${rows} in [1, 2, 42]", True),
        ("${rows} not in [1, 2]", True),
        ("'daily' in ${name}", True),
        ("${word} == 1", False),  # not a number: == is false, != true
        ("${word} != 1", True),
        ("${word} < 'b'", True),  # strings compare as strings
        ("${rows} < ${big}", True),  # two numeric references compare as numbers
        ("${word} > ${name}", False),
        ("${empty} == ''", True),
        ("true", True),
        ("false or true and false", False),  # and binds tighter than or
        ("(${rows} == 42 && ${word} == 'abc') || !true", True),
        ("'it\\'s' == \"it's\"", True),
    ],
)
def test_conditions(text: str, expected: bool) -> None:
    assert expr.evaluate(expr.parse(text), VALUES) is expected


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("", "empty condition", 1),
        ("${rows} >", "ends where a value was expected", 10),
        ("(${rows} == 1", "'(' is not closed", 1),
        ("${rows} == 1)", "without a matching '('", 13),
        ("${rows} = 1", "unexpected character '='", 9),
        ("${rows} < 1 < 2", "compares values, not conditions", 13),
        ("1 and 2", "joins conditions", 3),
        ("not ${rows}", "'not' applies to a condition", 1),
        ("${rows}", "must compare something", 1),
        ("${rows} == [1]", "a list only follows 'in'", 9),
        ("${rows} in [1,", "'[' is not closed", 12),
        ("${rows} in [1 2]", "separated by commas", 15),
        ("'abc", "string is not closed", 1),
        ("'a\\q'", "unknown escape", 3),
        ("${a-b} == 1", "${name}", 1),
        ("${} == 1", "${name}", 1),
        ("rows > 1", "unknown word 'rows'", 1),
        ("__import__('os').system('id') == 0", "unknown word '__import__'", 1),
        ("${rows}.__class__ == 1", "unexpected character '.'", 8),
        ("exec('x') == 1", "unknown word 'exec'", 1),
        ("${rows} == 1 ; ${rows} == 2", "unexpected character ';'", 14),
        ("true true", "expected an operator", 6),
        ("${rows} ==", "ends where a value was expected", 11),
    ],
)
def test_errors_point_at_the_column(text: str, message: str, column: int) -> None:
    with pytest.raises(expr.ExprError) as info:
        expr.parse(text)
    assert message in str(info.value)
    assert info.value.column == column, str(info.value)


def test_hostile_input_is_refused_not_crashing() -> None:
    limit = sys.getrecursionlimit()
    for text in (
        "(" * 100_000 + "true" + ")" * 100_000,
        "(" * (expr.MAX_DEPTH + 1) + "true" + ")" * (expr.MAX_DEPTH + 1),
        "not " * 2000 + "true",  # too long
        "1" * 10_000 + " == 1",
        "'" + "x" * 100_000 + "' == 'x'",
        "${rows} == 1 or " * 2000 + "true",
        "[" * 10_000,
        "${" * 10_000,
        "\x00\x01 == 1",
    ):
        with pytest.raises(expr.ExprError):
            expr.parse(text)
    assert sys.getrecursionlimit() == limit


def test_deep_but_allowed_nesting_and_long_chains_evaluate_without_recursion() -> None:
    text = "(" * expr.MAX_DEPTH + "${rows} == 42" + ")" * expr.MAX_DEPTH
    assert expr.evaluate(expr.parse(text), VALUES)
    chain = " and ".join(["not not true"] * 200)
    assert len(chain) < expr.MAX_LENGTH
    assert expr.evaluate(expr.parse(chain), VALUES)


def test_unknown_names_and_non_numbers_fail_at_run_time_with_the_reason() -> None:
    with pytest.raises(expr.EvalError, match=r"unknown name \$\{ghost\} at column 1"):
        expr.evaluate(expr.parse("${ghost} == 1"), VALUES)
    with pytest.raises(expr.EvalError, match=r"\$\{word\} is 'abc', not a number"):
        expr.evaluate(expr.parse("${word} > 1"), VALUES)
    assert expr.names(expr.parse("${a} == 1 or ${b} in [${c}, ${a}]")) == ["a", "b", "c"]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_parses_or_is_refused_with_a_column(text: str) -> None:
    try:
        program = expr.parse(text)
    except expr.ExprError as exc:
        assert 1 <= exc.column <= max(len(text), expr.MAX_LENGTH) + 1
        return
    with contextlib.suppress(expr.EvalError):
        expr.evaluate(program, VALUES)


_ATOMS = st.sampled_from(["${rows} == 42", "${word} != 'x'", "true", "false", "${rows} in [1, 42]", "${zero} > 1"])


@settings(max_examples=200, deadline=None)
@given(st.recursive(_ATOMS, lambda inner: st.one_of(
    st.tuples(inner, st.sampled_from([" and ", " or "]), inner).map(lambda t: f"({t[0]}{t[1]}{t[2]})"),
    inner.map(lambda x: f"not ({x})"),
), max_leaves=20))
def test_agrees_with_a_python_reading_of_the_same_formula(text: str) -> None:
    python = (text.replace("${rows} == 42", "True").replace("${word} != 'x'", "True")
              .replace("${rows} in [1, 42]", "True").replace("${zero} > 1", "False")
              .replace("true", "True").replace("false", "False"))
    try:
        program = expr.parse(text)
    except expr.ExprError as exc:
        assert "nested deeper" in str(exc)
        return
    assert expr.evaluate(program, VALUES) is bool(eval(python))  # the test's oracle only, never the product
