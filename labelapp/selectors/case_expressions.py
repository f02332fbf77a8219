"""The expression language's SQL back end: a parsed condition as a Django filter over ``Case``.

:mod:`learning.expressions` parses and checks the text (never ``eval``); this module turns its AST
into database expressions. Features live in the JSON field ``Case.features``: a numeric column is
``CAST(features ->> 'col' AS double precision)`` on PostgreSQL (``json_extract`` on SQLite), a
categorical one its text. Every comparison is two-valued, as in the mask back end: a comparison on
a missing value (SQL NULL, a division by zero) is false, never NULL, so ``not`` agrees too.
"""

from __future__ import annotations

import json
import operator
from functools import lru_cache, reduce

import numpy as np
from django.db import connection
from django.db.models import F, FloatField, Func, Lookup, Q, TextField, Value
from django.db.models.expressions import Combinable, ExpressionWrapper
from django.db.models.fields import DateTimeField
from django.db.models.functions import Cast, NullIf
from django.db.models.lookups import (
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    In,
    IsNull,
    LessThan,
    LessThanOrEqual,
)

from labelapp.models import Dataset
from labelapp.selectors.datasets import snapshot_dir_for
from learning.expressions import (
    CATEGORY,
    NUMBER,
    TEXT,
    TIME,
    Arith,
    BoolOp,
    Column,
    Compare,
    Expression,
    InList,
    Literal,
    Negate,
    Node,
    Not,
    column_kinds,
    evaluate_mask,
    parse,
)

#: Columns of ``Case`` itself; every other name is a key of ``Case.features``.
MODEL_COLUMNS = ("case_id", "entity_id", "ts")

_LOOKUPS = {
    "<": LessThan,
    "<=": LessThanOrEqual,
    ">": GreaterThan,
    ">=": GreaterThanOrEqual,
    "==": Exact,
}


class FeatureText(Func):
    """One key of ``Case.features`` as SQL: NULL where the JSON holds null or lacks the key.

    (Django's ``KeyTextTransform`` gives the text 'null' for a JSON null on SQLite, which a cast
    turns into 0: a missing amount would match ``amount < 5``.)
    """

    output_field = TextField()

    def __init__(self, key: str):
        super().__init__(F("features"))
        self.key = key

    def as_sql(self, compiler, connection, **extra):  # PostgreSQL (jsonb)
        column, params = compiler.compile(self.source_expressions[0])
        return f"({column} ->> %s)", (*params, self.key)

    def as_sqlite(self, compiler, connection, **extra):
        column, params = compiler.compile(self.source_expressions[0])
        return f"JSON_EXTRACT({column}, %s)", (*params, "$." + json.dumps(self.key))


def dataset_columns(dataset: Dataset) -> dict[str, str]:
    """The columns an expression over ``dataset``'s cases may name, with their kinds."""
    schema = (dataset.schema or {}).get("cases", {})
    return column_kinds(
        numeric=schema.get("numeric", []),
        categorical=schema.get("categorical", []),
        other=dataset.feature_columns or [],
    )


def case_expression_parse(dataset: Dataset, text: str) -> Expression:
    """``text`` parsed and checked against ``dataset``'s columns (``ExpressionError`` if not)."""
    return parse(text, dataset_columns(dataset))


def case_expression_q(expression: Expression) -> Q:
    """A ``Q`` keeping the cases that satisfy ``expression`` (filter a dataset's cases with it)."""
    return _condition(expression.root)


#: Up to this many matches, :func:`case_expression_filter` names the rows (an index lookup);
#: beyond, the SQL condition is cheaper (an ordered scan meets matches soon enough).
ROWS_LISTED_MAX = 5000
_MASK_CACHE_SIZE = 32


def case_expression_filter(dataset: Dataset, expression: Expression) -> Q:
    """The fastest equivalent of :func:`case_expression_q` for ``dataset``.

    The features of a case never change after import, so where the dataset's columnar snapshot
    exists the vectorized mask (:func:`learning.expressions.evaluate_mask`) finds the matching
    rows in milliseconds; a rare condition then becomes ``row IN (...)`` (the unique
    ``(dataset, row)`` index) instead of a scan that parses every case's JSON. A common one
    keeps the SQL condition. The two back ends select the same cases (tests hold them to it).
    """
    path = snapshot_dir_for(dataset) / "cases.parquet"
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return case_expression_q(expression)
    rows = _matching_rows(str(path), stamp, expression)
    if rows is None:
        return case_expression_q(expression)
    if not len(rows):
        return Q(pk__in=[])
    if connection.vendor == "postgresql":
        return Q(_AnyOf(F("row"), rows.tolist()))
    return Q(row__in=rows.tolist())


class _AnyOf(Lookup):
    """``lhs = ANY(%s)`` with the values as one array parameter (PostgreSQL): thousands of
    rows without thousands of placeholders to build, send and parse (20 ms at 3,800 rows)."""

    lookup_name = "any_of"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} = ANY(%s)", [*lhs_params, list(self.rhs)]


@lru_cache(maxsize=_MASK_CACHE_SIZE)
def _matching_rows(path: str, stamp: int, expression: Expression) -> np.ndarray | None:
    """Rows of the snapshot at ``path`` (as of ``stamp``) that satisfy ``expression``, or None
    when there are more than :data:`ROWS_LISTED_MAX` (or the snapshot lacks a column)."""
    import pyarrow.parquet as pq

    available = set(pq.read_schema(path).names)
    if not set(expression.columns) <= available:
        return None
    wanted = [*expression.columns, "row"] if "row" in available else list(expression.columns)
    frame = pq.read_table(path, columns=wanted).to_pandas()
    mask = evaluate_mask(expression, frame)
    if int(mask.sum()) > ROWS_LISTED_MAX:
        return None
    rows = frame["row"].to_numpy()[mask] if "row" in frame else np.flatnonzero(mask)
    return rows.astype(np.int64)


def _condition(node: Node) -> Q:
    if isinstance(node, BoolOp):
        parts = [_condition(item) for item in node.items]
        return reduce(lambda a, b: (a & b) if node.op == "and" else (a | b), parts)
    if isinstance(node, Not):
        return ~_condition(node.operand)
    if isinstance(node, Compare):
        left, right = _value(node.left), _value(node.right)
        if node.op == "!=":
            condition = ~Q(Exact(left, right))
        else:
            condition = Q(_LOOKUPS[node.op](left, right))
        return condition & _defined(node.left) & _defined(node.right)
    if isinstance(node, InList):
        item = _value(node.item)
        values = [_python_value(v) for v in node.values]
        if not values:
            member = Q(pk__in=[])
        else:
            member = Q(In(item, values))
        return (~member if node.negated else member) & _defined(node.item)
    raise TypeError(f"not a condition: {node!r}")


def _defined(node: Node) -> Q:
    """True where the value of ``node`` is not NULL (literals always are)."""
    if isinstance(node, Literal):
        return Q()
    return Q(IsNull(_value(node), False))


def _value(node: Node) -> Combinable:
    if isinstance(node, Literal):
        return Value(_python_value(node), output_field=_FIELDS[node.kind]())
    if isinstance(node, Column):
        if node.name in MODEL_COLUMNS:
            return F(node.name)
        text = FeatureText(node.name)
        return Cast(text, FloatField() if node.kind == NUMBER else TextField())
    if isinstance(node, Negate):
        return ExpressionWrapper(Value(0.0) - _value(node.operand), output_field=FloatField())
    if isinstance(node, Arith):
        left, right = _value(node.left), _value(node.right)
        if node.op == "/":
            right = NullIf(right, Value(0.0), output_field=FloatField())
        return ExpressionWrapper(_ARITH[node.op](left, right), output_field=FloatField())
    raise TypeError(f"not a value: {node!r}")


def _python_value(literal: Literal):
    return float(literal.value) if literal.kind == NUMBER else literal.value


_ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
_FIELDS = {NUMBER: FloatField, CATEGORY: TextField, TEXT: TextField, TIME: DateTimeField}
