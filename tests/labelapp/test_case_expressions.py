"""The expression language's two back ends agree: SQL over ``Case``, the mask over the snapshot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from django.db import connection
from django.db.models import Q

from labelapp.selectors.case_expressions import (
    case_expression_filter,
    case_expression_parse,
    case_expression_q,
)
from labelapp.selectors.datasets import snapshot_dir_for
from labelapp.services.imports import dataset_import
from learning.expressions import ExpressionError, evaluate_mask
from tests.labelapp.factories import make_dataset_dir

RULES = [
    "amount > 220",
    "amount > 220 and is_night == 1",
    "not amount > 100",
    "amount != 67.24",
    "hour in [22, 23, 0, 1] or is_weekend == '1'",
    "terminal_id in ['t1', 't2', 't3']",
    "terminal_id not in ['t1']",
    "amount / customer_avg_amount_7d > 1.5",
    "amount / (terminal_nb_tx_1d - 1) > 20",
    "customer_avg_amount_7d * 5 < amount or -amount < -150",
    "ts >= '2024-01-03' and ts < '2024-01-05 12:00'",
    "case_id in ['tx1', 'tx5', 'tx9'] or entity_id == 'c3'",
    "not (amount > 50 and amount <= 80) and customer_nb_tx_7d >= 3",
    "amount in []",
    "amount not in []",
]


@pytest.fixture
def imported(db, tmp_path):
    folder = make_dataset_dir(tmp_path, n_cases=400)
    cases = pd.read_parquet(folder / "cases.parquet")
    cases.loc[::7, "amount"] = np.nan  # missing values must be false in both back ends
    cases.loc[::11, "terminal_id"] = None
    cases.to_parquet(folder / "cases.parquet", index=False)
    return dataset_import(name="expr", source_dir=folder)


@pytest.mark.parametrize("text", RULES)
def test_sql_and_mask_select_the_same_cases(imported, text):
    expression = case_expression_parse(imported, text)
    in_sql = set(
        imported.cases.filter(case_expression_q(expression)).values_list("case_id", flat=True)
    )
    snapshot = pd.read_parquet(snapshot_dir_for(imported) / "cases.parquet")
    in_mask = set(snapshot["case_id"][evaluate_mask(expression, snapshot)])
    assert in_sql == in_mask
    # What the explorer and seeds use: the rows the mask names, or the SQL when too many.
    fastest = set(
        imported.cases.filter(case_expression_filter(imported, expression)).values_list(
            "case_id", flat=True
        )
    )
    assert fastest == in_sql
    if text not in ("amount in []",):
        assert in_sql or text.startswith("case_id"), "a rule of the test should select something"


def test_names_are_checked_against_the_dataset(imported):
    with pytest.raises(ExpressionError, match="unknown column 'label'"):
        case_expression_parse(imported, "label == 1")  # ground truth is never a case column
    with pytest.raises(ExpressionError, match="orders numbers and times only"):
        case_expression_parse(imported, "terminal_id > 3")


def test_a_common_condition_stays_sql_a_rare_one_names_rows(imported, monkeypatch):
    from labelapp.selectors import case_expressions

    monkeypatch.setattr(case_expressions, "ROWS_LISTED_MAX", 10)
    common = case_expression_parse(imported, "amount >= 0 or amount < 0")
    assert case_expression_filter(imported, common) == case_expression_q(common)
    rare = case_expression_parse(imported, "case_id in ['tx3', 'tx4']")
    matching = imported.cases.filter(case_expression_filter(imported, rare))
    assert sorted(matching.values_list("row", flat=True)) == [3, 4]
    if connection.vendor == "postgresql":  # one array parameter, not a placeholder a row
        assert "= ANY(" in str(matching.query)
    else:
        assert case_expression_filter(imported, rare) == Q(row__in=[3, 4])
