"""A small, safe expression language over a dataset's case columns.

Risk teams write rules such as ``amount > 220 and is_night == 1`` or
``terminal_id in ["t1", "t2"] or customer_avg_amount_7d * 5 < amount``. This module parses such
text with `lark <https://github.com/lark-parser/lark>`_ (an LALR grammar; nothing is ever handed to
``eval`` or to pandas ``query``), checks every name against the dataset's columns and every
operation against the columns' kinds, and returns one typed AST. Two back ends read that AST:
:func:`evaluate_mask` here (a vectorized boolean mask over a pandas DataFrame, e.g. the dataset's
columnar snapshot) and ``labelapp.selectors.case_expressions`` (a Django filter over ``Case``).

The language
------------
- comparisons ``< <= > >= == !=`` (not chained), ``x in [..]`` and ``x not in [..]``;
- ``and``, ``or``, ``not`` and parentheses (keywords in any case);
- ``+ - * /`` and unary ``-`` on numeric columns and numbers;
- numbers (``220``, ``0.5``, ``1e3``), strings in single or double quotes, columns by name, or in
  backticks when the name is not a plain identifier (`` `my col` ``).

Column kinds: ``number`` (the schema's numeric columns), ``category`` (categorical columns,
compared as text: ``hour == 23`` matches the value 23 stored as a number or as "23"), ``text``
(``case_id``, ``entity_id``) and ``time`` (``ts``, compared with an ISO date string:
``ts >= "2018-05-01"``, UTC). Only numbers order (``<``), only numbers take arithmetic.

Missing values: a comparison that involves a missing value (or a division by zero) is false, and
``not`` negates that result: ``not (amount > 5)`` is true for a case without an amount.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
from lark import Lark, Token, Transformer, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

NUMBER, CATEGORY, TEXT, TIME, BOOL = "number", "category", "text", "time", "bool"
COLUMN_KINDS = (NUMBER, CATEGORY, TEXT, TIME)
#: The columns every case has, whatever its dataset.
CASE_COLUMNS: dict[str, str] = {"case_id": TEXT, "entity_id": TEXT, "ts": TIME}
MAX_LENGTH = 2000
MAX_LIST = 10_000

GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr | or_expr _OR and_expr -> or_
?and_expr: not_expr | and_expr _AND not_expr -> and_
?not_expr: _NOT not_expr -> not_ | comparison
?comparison: sum
    | sum COMP_OP sum -> compare
    | sum _IN list -> in_
    | sum _NOT _IN list -> not_in
?sum: product | sum ADD_OP product -> arith
?product: unary | product MUL_OP unary -> arith
?unary: atom | "-" unary -> neg
?atom: SIGNED_NUMBER -> number
    | STRING -> string
    | NAME -> column
    | QUOTED_NAME -> column
    | "(" or_expr ")"
list: "[" [literal ("," literal)*] "]"
?literal: SIGNED_NUMBER -> number | STRING -> string

_OR: "or"i
_AND: "and"i
_NOT: "not"i
_IN: "in"i
COMP_OP: "<=" | ">=" | "==" | "!=" | "<" | ">"
ADD_OP: "+" | "-"
MUL_OP: "*" | "/"
SIGNED_NUMBER: /-?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?/
STRING: /"([^"\\\n]|\\.)*"/ | /'([^'\\\n]|\\.)*'/
NAME: /[A-Za-z_][A-Za-z0-9_]*/
QUOTED_NAME: /`[^`\n]+`/
%import common.WS
%ignore WS
"""

_PARSER = Lark(GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)

#: What a person reads for the parser's terminal names in "expected ..." messages.
_TERMINAL_WORDS = {
    "SIGNED_NUMBER": "a number",
    "STRING": "a string",
    "NAME": "a column",
    "QUOTED_NAME": "a column",
    "LPAR": "(",
    "RPAR": ")",
    "LSQB": "[",
    "RSQB": "]",
    "COMMA": ",",
    "COMP_OP": "a comparison (< <= > >= == !=)",
    "ADD_OP": "+ or -",
    "MUL_OP": "* or /",
    "MINUS": "-",
    "_OR": "or",
    "_AND": "and",
    "_NOT": "not",
    "_IN": "in",
    "$END": "the end",
}


class ExpressionError(ValueError):
    """Text outside the language, or a name or operation the dataset's columns do not allow.

    ``position`` is the 1-based character position the message is about (None: the whole text).
    """

    def __init__(self, message: str, position: int | None = None):
        self.message = message
        self.position = position
        where = f"at position {position}: " if position is not None else ""
        super().__init__(f"{where}{message}")


# --- the AST -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    kind: str  # NUMBER, CATEGORY, TEXT, TIME or BOOL: what the node's value is


@dataclass(frozen=True)
class Column(Node):
    name: str


@dataclass(frozen=True)
class Literal(Node):
    value: float | str | datetime


@dataclass(frozen=True)
class Arith(Node):
    op: str  # + - * /
    left: Node
    right: Node


@dataclass(frozen=True)
class Negate(Node):
    operand: Node


@dataclass(frozen=True)
class Compare(Node):
    op: str  # < <= > >= == !=
    left: Node
    right: Node


@dataclass(frozen=True)
class InList(Node):
    item: Node
    values: tuple[Literal, ...]
    negated: bool


@dataclass(frozen=True)
class BoolOp(Node):
    op: str  # and, or
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not(Node):
    operand: Node


@dataclass(frozen=True)
class Expression:
    """A parsed, checked condition: its text, its AST and the columns it reads."""

    text: str
    root: Node
    columns: tuple[str, ...]


# --- parsing -----------------------------------------------------------------------------------


def column_kinds(
    numeric: Iterable[str] = (), categorical: Iterable[str] = (), other: Iterable[str] = ()
) -> dict[str, str]:
    """The columns an expression may name: the case columns, then the dataset's features
    (``numeric`` as numbers; ``categorical`` and any ``other`` feature as categories)."""
    kinds = dict(CASE_COLUMNS)
    kinds.update({name: CATEGORY for name in other})
    kinds.update({name: CATEGORY for name in categorical})
    kinds.update({name: NUMBER for name in numeric})
    return kinds


def parse(text: str, columns: Mapping[str, str]) -> Expression:
    """Parse and check ``text`` against ``columns`` (name -> kind, see :func:`column_kinds`).

    Raises
    ------
    ExpressionError
        With the position and what was expected, for anything outside the language (attribute
        access, calls, subscripts, lambdas...), an unknown or dunder name, or a type mismatch.
    """
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("the expression is empty: write a condition such as amount > 220")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the expression is longer than {MAX_LENGTH} characters")
    try:
        tree = _PARSER.parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None
    builder = _Builder(text, columns)
    try:
        root = builder.transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, ExpressionError):
            raise exc.orig_exc from None
        raise
    if root.kind != BOOL:
        raise ExpressionError(
            "expected a condition (a comparison such as amount > 220), "
            f"not a {_kind_word(root.kind)} value",
            1,
        )
    return Expression(text=text, root=root, columns=tuple(sorted(builder.used)))


def _syntax_error(text: str, exc: UnexpectedInput) -> ExpressionError:
    position = exc.pos_in_stream + 1 if exc.pos_in_stream is not None else len(text) + 1
    if isinstance(exc, UnexpectedEOF) or (
        isinstance(exc, UnexpectedToken) and exc.token.type == "$END"
    ):
        expected = _expected_words(getattr(exc, "expected", ()) or ())
        return ExpressionError(f"the expression ends too early; expected {expected}", len(text))
    found = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
    before = text[: exc.pos_in_stream].rstrip()
    after_name = bool(before) and (before[-1].isalnum() or before[-1] in "_`)]")
    lambda_at = re.search(r"\blambda\b", text[: exc.pos_in_stream + 6])
    if lambda_at:
        return ExpressionError("lambdas are not part of the language", lambda_at.start() + 1)
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        found = str(exc.token)
    if found == "." and after_name:
        return ExpressionError("attribute access (a.b) is not part of the language", position)
    if found == "(" and after_name:
        return ExpressionError("function calls (f(x)) are not part of the language", position)
    if found == "[" and after_name:
        return ExpressionError("subscripts (a[0]) are not part of the language", position)
    if found == "=" and isinstance(exc, UnexpectedCharacters):
        return ExpressionError("unexpected '=': compare with ==", position)
    if isinstance(exc, UnexpectedCharacters):
        allowed = exc.allowed or set()
        return ExpressionError(
            f"unexpected character {found!r}; expected {_expected_words(allowed)}", position
        )
    if isinstance(exc, UnexpectedToken):
        if exc.token.type == "COMP_OP" and before:
            return ExpressionError(
                f"unexpected {found!r}: comparisons do not chain (write a < b and b < c)",
                position,
            )
        return ExpressionError(
            f"unexpected {found!r}; expected {_expected_words(exc.expected)}", position
        )
    return ExpressionError(str(exc).splitlines()[0], position)


def _expected_words(terminals: Iterable[str]) -> str:
    words = sorted({_TERMINAL_WORDS.get(t, t.lower()) for t in terminals})
    return ", ".join(words) if words else "something else"


def _kind_word(kind: str) -> str:
    return {NUMBER: "numeric", CATEGORY: "categorical", TEXT: "text", TIME: "time"}.get(kind, kind)


def _position(meta_or_token) -> int | None:
    if isinstance(meta_or_token, Token):
        return (meta_or_token.start_pos or 0) + 1
    return getattr(meta_or_token, "start_pos", None) and meta_or_token.start_pos + 1


@v_args(meta=True)
class _Builder(Transformer):
    """The parse tree to the AST, checking names and kinds on the way."""

    def __init__(self, text: str, columns: Mapping[str, str]):
        super().__init__()
        self.text = text
        self.columns = columns
        self.used: set[str] = set()
        self.starts: dict[int, int] = {}  # id(node) -> 1-based position, for error messages

    def _at(self, node: Node, meta) -> Node:
        start = getattr(meta, "start_pos", None)
        if start is not None:
            self.starts[id(node)] = start + 1
        return node

    def _pos(self, node: Node) -> int | None:
        return self.starts.get(id(node))

    # leaves
    def number(self, meta, children) -> Literal:
        token = children[0]
        value = float(token)
        if not np.isfinite(value):
            raise ExpressionError(f"{token} is not a finite number", _position(token))
        return self._at(Literal(NUMBER, value), meta)

    def string(self, meta, children) -> Literal:
        token = children[0]
        body = str(token)[1:-1]
        value = body.encode("utf-8").decode("unicode_escape") if "\\" in body else body
        return self._at(Literal(TEXT, value), meta)

    def column(self, meta, children) -> Column:
        token = children[0]
        name = str(token)
        if token.type == "QUOTED_NAME":
            name = name[1:-1]
        position = _position(token)
        if name.startswith("__"):
            raise ExpressionError(f"names starting with __ ({name}) are not allowed", position)
        kind = self.columns.get(name)
        if kind is None:
            close = difflib.get_close_matches(name, list(self.columns), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            known = ", ".join(sorted(self.columns))
            raise ExpressionError(
                f"unknown column {name!r}{hint}; this dataset's columns: {known}", position
            )
        self.used.add(name)
        return self._at(Column(kind, name), meta)

    # arithmetic
    def neg(self, meta, children) -> Node:
        (operand,) = children
        self._need_number(operand, "-")
        if isinstance(operand, Literal):
            return self._at(Literal(NUMBER, -operand.value), meta)
        return self._at(Negate(NUMBER, operand), meta)

    def arith(self, meta, children) -> Node:
        left, op, right = children
        for side in (left, right):
            self._need_number(side, str(op))
        return self._at(Arith(NUMBER, str(op), left, right), meta)

    def _need_number(self, node: Node, op: str) -> None:
        if node.kind != NUMBER:
            raise ExpressionError(
                f"{op} needs numbers, but {_describe(node)} is {_kind_word(node.kind)}",
                self._pos(node),
            )

    # conditions
    def compare(self, meta, children) -> Node:
        left, op, right = children
        op = str(op)
        for side in (left, right):
            if side.kind == BOOL:
                raise ExpressionError(
                    f"{op} compares values, not conditions: add parentheses or use and/or",
                    self._pos(side),
                )
        left, right = self._align(left, right, op)
        if op not in ("==", "!=") and left.kind not in (NUMBER, TIME):
            raise ExpressionError(
                f"{op} orders numbers and times only; {_describe(left)} is "
                f"{_kind_word(left.kind)}: use ==, != or in",
                self._pos(left),
            )
        return self._at(Compare(BOOL, op, left, right), meta)

    def _align(self, left: Node, right: Node, op: str) -> tuple[Node, Node]:
        """Both sides of one kind: a string literal beside ``ts`` becomes a time, a literal
        beside a category or text column becomes text; anything else of two kinds is an error."""
        if left.kind == right.kind or {left.kind, right.kind} == {CATEGORY, TEXT}:
            return left, right
        for column, literal in ((left, right), (right, left)):
            if not isinstance(literal, Literal):
                continue
            coerced = None
            if column.kind == TIME and literal.kind == TEXT:
                coerced = Literal(TIME, _as_time(literal.value, self._pos(literal)))
            elif column.kind in (CATEGORY, TEXT) and literal.kind == NUMBER:
                coerced = Literal(column.kind, _category_text(literal.value))
            if coerced is not None:
                self.starts[id(coerced)] = self._pos(literal) or 0
                return (column, coerced) if column is left else (coerced, column)
        raise ExpressionError(
            f"{op} cannot compare {_describe(left)} ({_kind_word(left.kind)}) with "
            f"{_describe(right)} ({_kind_word(right.kind)})",
            self._pos(right) or self._pos(left),
        )

    def in_(self, meta, children) -> Node:
        return self._in(meta, children, negated=False)

    def not_in(self, meta, children) -> Node:
        return self._in(meta, children, negated=True)

    def _in(self, meta, children, *, negated: bool) -> Node:
        item, values = children
        if item.kind == BOOL:
            raise ExpressionError("in needs a value on its left, not a condition", self._pos(item))
        if len(values) > MAX_LIST:
            raise ExpressionError(f"a list holds at most {MAX_LIST} values", self._pos(item))
        aligned = tuple(self._align(item, value, "in")[1] for value in values)
        if item.kind == NUMBER and any(v.kind != NUMBER for v in aligned):
            raise ExpressionError(
                f"{_describe(item)} is numeric: its list must hold numbers", self._pos(item)
            )
        return self._at(InList(BOOL, item, aligned, negated), meta)

    def list(self, meta, children) -> list[Literal]:
        return [c for c in children if c is not None]

    def not_(self, meta, children) -> Node:
        (operand,) = children
        self._need_condition(operand, "not")
        return self._at(Not(BOOL, operand), meta)

    def and_(self, meta, children) -> Node:
        return self._bool("and", meta, children)

    def or_(self, meta, children) -> Node:
        return self._bool("or", meta, children)

    def _bool(self, op: str, meta, children) -> Node:
        items: list[Node] = []
        for child in children:
            self._need_condition(child, op)
            items.extend(child.items if isinstance(child, BoolOp) and child.op == op else [child])
        return self._at(BoolOp(BOOL, op, tuple(items)), meta)

    def _need_condition(self, node: Node, op: str) -> None:
        if node.kind != BOOL:
            raise ExpressionError(
                f"{op} joins conditions, but {_describe(node)} is a {_kind_word(node.kind)} value"
                " (compare it: amount > 220)",
                self._pos(node),
            )


def _describe(node: Node) -> str:
    if isinstance(node, Column):
        return node.name
    if isinstance(node, Literal):
        return repr(node.value) if isinstance(node.value, str) else f"{node.value:g}"
    return "this expression"


def _as_time(value: str, position: int | None) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ExpressionError(
            f'{value!r} is not a time: write it as an ISO date such as "2018-05-01" or '
            '"2018-05-01 22:00"',
            position,
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _category_text(value: float | str) -> str:
    """A literal as categorical values are compared: integral numbers without a decimal point."""
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else repr(float(value))


# --- the mask back end -------------------------------------------------------------------------


def evaluate_mask(expression: Expression, frame: pd.DataFrame) -> np.ndarray:
    """Which rows of ``frame`` satisfy ``expression``: a boolean array of ``len(frame)``.

    ``frame`` holds (at least) the columns ``expression.columns``, as the dataset's snapshot has
    them (``ts`` as naive UTC or aware timestamps). Vectorized: no Python loop over rows.
    """
    missing = [c for c in expression.columns if c not in frame.columns]
    if missing:
        raise ExpressionError(f"the data has no column {', '.join(missing)}")
    values, valid = _mask_eval(expression.root, frame)
    return np.asarray(values, dtype=bool) & valid


def _mask_eval(node: Node, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(values, valid): values of the node and where they are defined (two-valued logic:
    a condition is always valid; a comparison on an invalid value is false)."""
    n = len(frame)
    if isinstance(node, Column):
        return _column_values(frame[node.name], node.kind)
    if isinstance(node, Literal):
        value = node.value
        if node.kind == TIME:
            value = np.datetime64(value.astimezone(UTC).replace(tzinfo=None), "ns")
        return np.full(n, value, dtype=object if node.kind in (TEXT, CATEGORY) else None), (
            np.ones(n, dtype=bool)
        )
    if isinstance(node, Negate):
        values, valid = _mask_eval(node.operand, frame)
        return -values, valid
    if isinstance(node, Arith):
        (a, a_ok), (b, b_ok) = _mask_eval(node.left, frame), _mask_eval(node.right, frame)
        with np.errstate(all="ignore"):
            if node.op == "+":
                out = a + b
            elif node.op == "-":
                out = a - b
            elif node.op == "*":
                out = a * b
            else:
                out = a / np.where(b == 0, np.nan, b)
        return out, a_ok & b_ok & np.isfinite(out)
    if isinstance(node, Compare):
        (a, a_ok), (b, b_ok) = _mask_eval(node.left, frame), _mask_eval(node.right, frame)
        ok = a_ok & b_ok
        with np.errstate(all="ignore"):
            result = _COMPARE[node.op](a, b)
        return np.asarray(result, dtype=bool) & ok, np.ones(n, dtype=bool)
    if isinstance(node, InList):
        values, ok = _mask_eval(node.item, frame)
        wanted = [v.value for v in node.values]
        if node.item.kind == TIME:
            wanted = [np.datetime64(w.astimezone(UTC).replace(tzinfo=None), "ns") for w in wanted]
        member = pd.Series(values).isin(wanted).to_numpy()
        result = (~member if node.negated else member) & ok
        return result, np.ones(n, dtype=bool)
    if isinstance(node, Not):
        values, _ = _mask_eval(node.operand, frame)
        return ~values, np.ones(n, dtype=bool)
    if isinstance(node, BoolOp):
        parts = [_mask_eval(item, frame)[0] for item in node.items]
        combined = np.logical_and.reduce(parts) if node.op == "and" else np.logical_or.reduce(parts)
        return combined, np.ones(n, dtype=bool)
    raise TypeError(f"unknown node {node!r}")


_COMPARE = {
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": np.not_equal,
}


def _column_values(series: pd.Series, kind: str) -> tuple[np.ndarray, np.ndarray]:
    if kind == NUMBER:
        numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        return numbers, np.isfinite(numbers)
    if kind == TIME:
        times = pd.to_datetime(series, utc=True).dt.tz_localize(None)
        return times.to_numpy(dtype="datetime64[ns]"), times.notna().to_numpy()
    valid = series.notna().to_numpy()
    if pd.api.types.is_float_dtype(series):
        # As the database's JSON holds them: Arrow writes 1.0 as "1" and 2.5 as "2.5".
        floats = series.to_numpy(dtype="float64", na_value=np.nan)
        valid &= np.isfinite(floats)
        text = pa.array(np.where(valid, floats, 0.0)).cast(pa.string())
        return np.asarray(text.to_pylist(), dtype=object), valid
    return series.astype(str).to_numpy(dtype=object), valid
