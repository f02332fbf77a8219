"""The expression language: what it accepts, what it refuses (with where and why), the mask."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from learning.expressions import (
    CATEGORY,
    NUMBER,
    TIME,
    BoolOp,
    Compare,
    ExpressionError,
    InList,
    Not,
    column_kinds,
    evaluate_mask,
    parse,
)

COLUMNS = column_kinds(
    numeric=["amount", "customer_avg_amount_7d", "order"], categorical=["is_night", "terminal_id"]
)


@pytest.mark.parametrize(
    "text",
    [
        "amount > 220",
        "amount > 220 and is_night == 1",
        "amount >= 1 AND NOT amount > 3",
        "terminal_id in ['t1', \"t2\"] or amount * 2 / 3 - 1 + -4 < 0",
        "case_id == 'tx1' or entity_id != \"c2\"",
        "ts >= '2018-05-01' and ts < '2018-05-01T12:00:00'",
        "amount not in [1, 2.5, -3, 1e3]",
        "(amount > 1 or amount < 0) and not (is_night in [0])",
        "`order` > 2 and customer_avg_amount_7d * 5 < amount",
        "is_night == '1'",
    ],
)
def test_accepts_the_grammar(text):
    expression = parse(text, COLUMNS)
    assert expression.root.kind == "bool"
    assert set(expression.columns) <= set(COLUMNS)


def test_the_ast_is_typed_and_flat():
    root = parse("amount > 220 and is_night == 1 and not ts < '2018-05-01'", COLUMNS).root
    assert isinstance(root, BoolOp) and root.op == "and" and len(root.items) == 3
    first, second, third = root.items
    assert isinstance(first, Compare) and first.left.kind == NUMBER
    # A number beside a categorical column is compared as its text.
    assert second.right.kind == CATEGORY and second.right.value == "1"
    assert isinstance(third, Not) and third.operand.right.kind == TIME
    assert isinstance(parse("amount in []", COLUMNS).root, InList)


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("amount.real > 3", 7, "attribute access"),
        ("amount.__class__ > 3", 7, "attribute access"),
        ("abs(amount) > 3", 4, "function calls"),
        ("amount[0] > 1", 7, "subscripts"),
        ("lambda x: x", 1, "lambdas"),
        ("__import__ == 1", 1, "names starting with __"),
        ("`__class__` == 1", 1, "names starting with __"),
        ("amout > 2", 1, "unknown column 'amout' (did you mean amount?)"),
        ("amount > 'x'", 10, "cannot compare amount (numeric) with 'x' (text)"),
        ("is_night > 1", 1, "orders numbers and times only"),
        ("terminal_id + 1 > 2", 1, "+ needs numbers"),
        ("amount", 1, "expected a condition"),
        ("amount or 1", 1, "or joins conditions"),
        ("1 < amount < 3", 12, "comparisons do not chain"),
        ("ts > 'yesterday'", 6, "is not a time"),
        ("amount > ", 9, "ends too early; expected (, -, a column, a number, a string"),
        ("amount @ 2", 8, "unexpected character '@'"),
        ("amount = 2", 8, "compare with =="),
        ("amount in ['a']", 12, "in cannot compare amount (numeric) with 'a' (text)"),
        ("(amount > 1) > 2", 2, "compares values, not conditions"),
    ],
)
def test_refuses_what_is_outside_the_language_with_where_and_why(text, position, message):
    with pytest.raises(ExpressionError) as caught:
        parse(text, COLUMNS)
    assert caught.value.position == position, str(caught.value)
    assert message in caught.value.message
    assert str(caught.value).startswith(f"at position {position}: ")


@pytest.mark.parametrize("text", ["", "   ", "x" * 3000])
def test_refuses_empty_or_huge_text(text):
    with pytest.raises(ExpressionError):
        parse(text, COLUMNS)


def test_never_evaluates_python():
    """Text that would run code under eval is refused before anything runs."""
    for text in ["__import__('os').system('true')", "().__class__", "open('x')", "[1][0] > 0"]:
        with pytest.raises(ExpressionError):
            parse(text, COLUMNS)


FRAME = pd.DataFrame(
    {
        "case_id": ["a", "b", "c", "d", "e"],
        "entity_id": ["x", "x", "y", "y", "z"],
        "ts": pd.to_datetime(
            ["2018-04-01 10:00", "2018-05-01 00:00", "2018-05-02 00:00", None, "2018-06-01 00:00"]
        ),
        "amount": [10.0, 250.0, np.nan, 300.0, 0.0],
        "customer_avg_amount_7d": [5.0, 0.0, 1.0, 60.0, 2.0],
        "order": [1, 2, 3, 4, 5],
        "is_night": [0, 1, 1, 0, 1],
        "terminal_id": ["t1", "t2", "t3", None, "t1"],
    }
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("amount > 220", "bd"),
        ("amount > 220 and is_night == 1", "b"),
        ("not amount > 220", "ace"),  # missing amount: the comparison is false, not is true
        ("amount != 10", "bde"),  # missing amount: false
        ("terminal_id in ['t1', 't3']", "ace"),
        ("terminal_id not in ['t1']", "bc"),  # d has no terminal: false
        ("amount / customer_avg_amount_7d >= 2", "ad"),  # b divides by zero: false
        ("-amount < -100 or entity_id == 'z'", "bde"),
        ("ts >= '2018-05-01' and ts < '2018-05-03'", "bc"),
        ("is_night == '1' and `order` >= 3", "ce"),
        ("amount in []", ""),
    ],
)
def test_mask(text, expected):
    mask = evaluate_mask(parse(text, COLUMNS), FRAME)
    assert "".join(FRAME["case_id"][mask]) == expected


def test_the_library_imports_no_django():
    code = "import learning.expressions, sys; assert 'django' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
