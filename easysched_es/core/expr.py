"""Conditions of SWITCH cases: a small, pure expression language, parsed at define, evaluated in the fold.

Grammar (loosest first; `&&`, `||`, `!` are accepted for `and`, `or`, `not`):

    condition  := condition "or" condition | condition "and" condition | "not" condition
                | "(" condition ")" | comparison | "true" | "false"
    comparison := value ("==" | "!=" | "<" | "<=" | ">" | ">=") value
                | value ["not"] "in" (list | value)
    list       := "[" [value ("," value)*] "]"
    value      := ${name} | number | string
    number     := [-]digits[.digits]          (exact decimals, never floats)
    string     := '...' or "..." with \\ \' \" \n \t escapes

`${name}` is a workflow parameter or an output parameter of an upstream task; its value is
a string. Compared with a number, it is read as a number (`${rows} > 1000`); `==` and `!=`
against a number are simply false/true when it is not numeric, ordering fails the task with
the reason. Two `${...}` compare as numbers when both are numeric, else as strings. `in`
tests membership in a list, or a substring when the right side is a single value.

The parser is shunting-yard (no recursion) over a bounded token stream: expressions are at
most `MAX_LENGTH` characters, nest at most `MAX_DEPTH` deep, and number literals hold at
most `MAX_NUMBER` characters; anything else is refused with the column. Evaluation runs the
compiled postfix program on a stack. There is no `eval`, no attribute access, no call.
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache
from typing import Any

MAX_LENGTH = 4096
MAX_DEPTH = 32
MAX_NUMBER = 64

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_NUMERIC_VALUE = re.compile(r"\s*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)\s*")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DIGITS = frozenset("0123456789")
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t"}
_COMPARE = ("==", "!=", "<=", ">=", "<", ">")
_WORDS = {"and": "and", "or": "or", "not": "not", "in": "in", "true": "true", "false": "false"}
_SYMBOLS = {"&&": "and", "||": "or", "!": "not"}
_PRECEDENCE = {"or": 1, "and": 2, "not": 3, "cmp": 4}


class ExprError(ValueError):
    """An expression that cannot be parsed, with the 1-based column of the problem."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"{message} (column {column})")
        self.column = column


class EvalError(ValueError):
    """An expression that cannot be evaluated with the values at hand (the reason says why)."""


# Program instructions: (op, argument, column). Kinds on the type stack: "bool", "value", "list".
Instr = tuple[str, Any, int]


def _tokens(text: str) -> list[tuple[str, Any, int]]:
    """(kind, value, column) tokens; kinds: num str ref list op word ( )."""
    out: list[tuple[str, Any, int]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        col = i + 1
        if ch.isspace():
            i += 1
        elif text.startswith("${", i):
            end = text.find("}", i + 2)
            name = text[i + 2: end] if end >= 0 else ""
            if end < 0 or not _NAME.fullmatch(name):
                raise ExprError("a reference is written ${name} (letters, digits, _)", col)
            out.append(("ref", name, col))
            i = end + 1
        elif ch in "'\"":
            value, i = _string(text, i)
            out.append(("str", value, col))
        elif ch in _DIGITS or (ch == "-" and text[i + 1: i + 2] in _DIGITS and i + 1 < n):
            m = _NUMBER.match(text, i)
            assert m is not None
            if len(m.group()) > MAX_NUMBER:
                raise ExprError(f"number literal longer than {MAX_NUMBER} characters", col)
            out.append(("num", Decimal(m.group()), col))
            i = m.end()
        elif text.startswith(_COMPARE, i):
            op = next(o for o in _COMPARE if text.startswith(o, i))
            out.append(("op", op, col))
            i += len(op)
        elif text.startswith(("&&", "||"), i) or ch == "!":
            sym = text[i: i + 2] if text.startswith(("&&", "||"), i) else "!"
            out.append(("word", _SYMBOLS[sym], col))
            i += len(sym)
        elif ch in "()[],":
            out.append((ch, ch, col))
            i += 1
        elif (m := _WORD.match(text, i)) is not None:
            word = m.group()
            if word not in _WORDS:
                raise ExprError(f"unknown word {word[:40]!r}: write ${{{word[:40]}}} for a parameter, "
                                "quotes for a string", col)
            out.append(("word", word, col))
            i = m.end()
        else:
            raise ExprError(f"unexpected character {ch!r}", col)
    return out


def _string(text: str, i: int) -> tuple[str, int]:
    quote, start = text[i], i
    i += 1
    chars: list[str] = []
    while i < len(text):
        ch = text[i]
        if ch == quote:
            return "".join(chars), i + 1
        if ch == "\\":
            nxt = text[i + 1: i + 2]
            if nxt not in _ESCAPES:
                raise ExprError("unknown escape in a string (use \\\\ \\' \\\" \\n \\t)", i + 1)
            chars.append(_ESCAPES[nxt])
            i += 2
        else:
            chars.append(ch)
            i += 1
    raise ExprError("string is not closed", start + 1)


def parse(text: str) -> list[Instr]:
    """Compile a condition to a postfix program, or raise ExprError with the column."""
    return list(_parse(text))


@lru_cache(maxsize=1024)
def _parse(text: str) -> tuple[Instr, ...]:
    if len(text) > MAX_LENGTH:
        raise ExprError(f"expression longer than {MAX_LENGTH} characters", MAX_LENGTH + 1)
    tokens = _tokens(text)
    if not tokens:
        raise ExprError("empty condition", 1)
    program: list[Instr] = []
    kinds: list[str] = []  # static kind of each value the program leaves on the stack
    ops: list[tuple[str, Any, int]] = []  # operator stack: (op, arg, column)
    expect_operand = True
    depth = 0
    k = 0

    def emit(op: str, arg: Any, col: int) -> None:
        if op in ("and", "or"):
            right, left = kinds.pop(), kinds.pop()
            if left != "bool" or right != "bool":
                raise ExprError(f"'{op}' joins conditions (comparisons, true, false), not values", col)
            kinds.append("bool")
        elif op == "not":
            if kinds.pop() != "bool":
                raise ExprError("'not' applies to a condition, not a value", col)
            kinds.append("bool")
        else:  # a comparison or (not) in
            right, left = kinds.pop(), kinds.pop()
            if left != "value" or right == "bool" or (right == "list" and op not in ("in", "not in")):
                raise ExprError(f"'{op}' compares values, not conditions" if "bool" in (left, right)
                                else "a list only follows 'in'", col)
            kinds.append("bool")
        program.append((op, arg, col))

    def reduce(min_prec: int) -> None:
        while ops and ops[-1][0] != "(" and _prec(ops[-1][0]) >= min_prec:
            op, arg, col = ops.pop()
            emit(op, arg, col)

    while k < len(tokens):
        kind, value, col = tokens[k]
        k += 1
        if expect_operand:
            if kind in ("num", "str", "ref"):
                program.append(("ref" if kind == "ref" else "lit", value, col))
                kinds.append("value")
                expect_operand = False
            elif kind == "word" and value in ("true", "false"):
                program.append(("lit", value == "true", col))
                kinds.append("bool")
                expect_operand = False
            elif kind == "word" and value == "not":
                ops.append(("not", None, col))
            elif kind == "(":
                depth += 1
                if depth > MAX_DEPTH:
                    raise ExprError(f"nested deeper than {MAX_DEPTH}", col)
                ops.append(("(", None, col))
            elif kind == "[":
                items, k = _list(tokens, k, col)
                program.append(("list", items, col))
                kinds.append("list")
                expect_operand = False
            else:
                raise ExprError(f"expected a value or a condition, found {_show(kind, value)}", col)
            continue
        # expecting an operator or a closing parenthesis
        if kind == "op":
            reduce(_PRECEDENCE["cmp"])
            ops.append((value, None, col))
        elif kind == "word" and value == "in":
            reduce(_PRECEDENCE["cmp"])
            ops.append(("in", None, col))
        elif kind == "word" and value == "not" and k < len(tokens) and tokens[k][:2] == ("word", "in"):
            k += 1
            reduce(_PRECEDENCE["cmp"])
            ops.append(("not in", None, col))
        elif kind == "word" and value in ("and", "or"):
            reduce(_PRECEDENCE[value])
            ops.append((value, None, col))
        elif kind == ")":
            reduce(0)
            if not ops:
                raise ExprError("')' without a matching '('", col)
            ops.pop()
            depth -= 1
            continue
        else:
            raise ExprError(f"expected an operator (==, <, in, and, or...), found {_show(kind, value)}", col)
        # Comparisons do not chain: `a < b < c` is refused by the kind check of `emit`.
        expect_operand = True
    if expect_operand:
        raise ExprError("the condition ends where a value was expected", len(text) + 1)
    reduce(0)
    if ops:
        raise ExprError("'(' is not closed", ops[-1][2])
    if kinds != ["bool"]:
        raise ExprError("a condition must compare something (for example ${rows} > 0)", 1)
    return tuple(program)


def _prec(op: str) -> int:
    if op in ("and", "or", "not"):
        return _PRECEDENCE[op]
    return _PRECEDENCE["cmp"]


def _list(tokens: list[tuple[str, Any, int]], k: int, start: int) -> tuple[tuple[tuple[str, Any], ...], int]:
    items: list[tuple[str, Any]] = []
    expect_item = True
    while k < len(tokens):
        kind, value, col = tokens[k]
        k += 1
        if expect_item and kind in ("num", "str", "ref"):
            items.append((kind, value))
            expect_item = False
        elif kind == "]" and (not expect_item or not items):
            return tuple(items), k
        elif kind == "," and not expect_item:
            expect_item = True
        else:
            raise ExprError(f"a list holds values separated by commas, found {_show(kind, value)}", col)
    raise ExprError("'[' is not closed", start)


def _show(kind: str, value: Any) -> str:
    if kind == "ref":
        return f"${{{value}}}"
    if kind == "str":
        return f"string {value[:20]!r}"
    return f"{value}" if kind != "op" else f"'{value}'"


def names(program: list[Instr]) -> list[str]:
    """The `${name}` references of a compiled program, in order of first use."""
    seen: dict[str, None] = {}
    for op, arg, _ in program:
        if op == "ref":
            seen[arg] = None
        elif op == "list":
            for kind, value in arg:
                if kind == "ref":
                    seen[value] = None
    return list(seen)


# ---- evaluation ------------------------------------------------------------------------

# A runtime value: ("num", Decimal) | ("str", str) from a literal | ("ref", name, str) | bool | list.


def _as_number(v: tuple[Any, ...]) -> Decimal | None:
    if v[0] == "num":
        return v[1]  # type: ignore[no-any-return]
    text = v[-1]
    return Decimal(text.strip()) if _NUMERIC_VALUE.fullmatch(text) else None


def _equal(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    if a[0] == "num" or b[0] == "num":
        x, y = _as_number(a), _as_number(b)
        return x is not None and y is not None and x == y
    if a[0] == "ref" and b[0] == "ref":
        x, y = _as_number(a), _as_number(b)
        if x is not None and y is not None:
            return x == y
    return bool(a[-1] == b[-1])


def _order(a: tuple[Any, ...], b: tuple[Any, ...], op: str, col: int) -> bool:
    if a[0] == "num" or b[0] == "num" or (a[0] == "ref" and b[0] == "ref"):
        x, y = _as_number(a), _as_number(b)
        if x is not None and y is not None:
            return bool(_ORDER[op](x, y))
        if a[0] == "num" or b[0] == "num":
            bad = b if x is not None else a
            raise EvalError(f"${{{bad[1]}}} is {bad[-1][:40]!r}, not a number, at column {col}")
    return bool(_ORDER[op](str(a[-1]), str(b[-1])))


_ORDER: dict[str, Any] = {
    "<": lambda x, y: x < y, "<=": lambda x, y: x <= y, ">": lambda x, y: x > y, ">=": lambda x, y: x >= y,
}


def evaluate(program: list[Instr], values: dict[str, str]) -> bool:
    """Run a compiled condition against parameter values; EvalError names an unknown name or a bad value."""
    stack: list[Any] = []

    def value(kind: str, arg: Any, col: int) -> tuple[Any, ...]:
        if kind == "ref":
            found = values.get(arg)
            if found is None:
                raise EvalError(f"unknown name ${{{arg}}} at column {col}: not a workflow parameter "
                                "nor an output parameter of an upstream task")
            return ("ref", arg, found)
        return (kind if kind == "num" else "str", arg)

    for op, arg, col in program:
        if op == "lit":
            if isinstance(arg, bool):
                stack.append(arg)
            else:
                stack.append(("num", arg) if isinstance(arg, Decimal) else ("str", arg))
        elif op == "ref":
            stack.append(value("ref", arg, col))
        elif op == "list":
            stack.append([value(kind, item, col) for kind, item in arg])
        elif op == "not":
            stack.append(not stack.pop())
        elif op in ("and", "or"):
            right, left = stack.pop(), stack.pop()
            stack.append((left and right) if op == "and" else (left or right))
        else:
            right, left = stack.pop(), stack.pop()
            if op in ("in", "not in"):
                if isinstance(right, list):
                    found = any(_equal(left, item) for item in right)
                else:
                    found = str(left[-1]) in str(right[-1])
                stack.append(found if op == "in" else not found)
            elif op == "==":
                stack.append(_equal(left, right))
            elif op == "!=":
                stack.append(not _equal(left, right))
            else:
                stack.append(_order(left, right, op, col))
    return bool(stack[-1])
