"""Rule export: a model version's strongest segments as readable rules (:mod:`learning.rules`).

The rules are fitted to reproduce the version's top ``top_share`` of cases by its own scores
(``scores.npy``) from the hand features of its feature spec (numeric and categorical columns of
the snapshot it was trained on; no embeddings, no label-derived or kNN columns). Each rule comes
with its coverage (cases it matches) and its precision on known answers, defined as

    precision = (covered cases that are positive) / (covered cases with a known answer)

where a case with a known answer is a seed positive, a confirmed or a not-confirmed case (pool
states ``P``, ``confirmed``, ``not_confirmed``; pool states now) and a positive is a seed or a
confirmed case; ``n_known`` says over how many cases it was measured. ``model_precision`` is the
same figure for the version's own ``coverage`` highest-scored cases, and ``cumulative`` the same
for the rules down to this one taken together. Every export is audit-logged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from labelapp.models import ModelVersion, PoolState
from labelapp.services.audit import audit_event_create
from labelapp.services.model_versions import ModelVersionError, model_version_scores
from labelapp.services.pipeline import pool_states, read_snapshot_cases
from learning.featurespec import FeatureSpec
from learning.rules import RuleExtractor, rules_report

PRECISION_DEFINITION = (
    "positives (seeds and confirmed) among the covered cases with a known answer (seeds, "
    "confirmed, not confirmed); n_known is how many that was"
)


class RulesError(Exception):
    """Rules cannot be written for this version; the message says why."""


@dataclass(frozen=True)
class RuleParams:
    """How the rules are fitted: one home for the page, the API and the command."""

    top_share: float = 0.01
    max_depth: int = 3
    max_rules: int = 10

    #: (low, high) accepted for each field, inclusive.
    BOUNDS = {"top_share": (0.0001, 0.5), "max_depth": (1, 6), "max_rules": (1, 10)}
    HELP = {
        "top_share": "the model's top cases the rules reproduce, as a share of all cases",
        "max_depth": "conditions per rule at most (the depth of the tree)",
        "max_rules": "rules at most",
    }

    @classmethod
    def from_mapping(cls, raw: Any) -> RuleParams:
        """Parse and check values given as text or numbers; absent or empty ones keep defaults.

        Raises
        ------
        RulesError
            With one ``name: problem`` per bad value.
        """
        values, problems = {}, []
        for f in fields(cls):
            text = raw.get(f.name) if hasattr(raw, "get") else None
            if text is None or str(text).strip() == "":
                continue
            kind = float if f.name == "top_share" else int
            try:
                value = kind(text)
            except (TypeError, ValueError):
                problems.append(f"{f.name}: {text!r} is not a {kind.__name__}")
                continue
            low, high = cls.BOUNDS[f.name]
            if not low <= value <= high:  # NaN fails too
                problems.append(f"{f.name}: must lie between {low} and {high}, got {value}")
                continue
            values[f.name] = value
        if problems:
            raise RulesError("; ".join(problems))
        return cls(**values)


def _hand_features(version: ModelVersion) -> tuple[list[str], list[str]]:
    spec_path = Path(version.artifact_dir) / "feature_spec.json"
    if not spec_path.exists():
        raise RulesError(f"model version {version.pk} has no feature spec at {spec_path}")
    spec = FeatureSpec.load(spec_path)
    return list(spec.numeric_columns), list(spec.categorical_columns)


def model_version_rules(*, version: ModelVersion, params: RuleParams | None = None) -> dict:
    """Fit and measure the rules of ``version`` (no side effects; see :func:`rules_export`)."""
    params = params or RuleParams()
    dataset = version.dataset
    numeric, categorical = _hand_features(version)
    if not numeric and not categorical:
        raise RulesError(f"model version {version.pk} has no hand feature to write rules with")
    try:
        scores = np.asarray(model_version_scores(version), dtype=np.float64)
    except ModelVersionError as exc:
        raise RulesError(str(exc)) from exc
    snapshot_dir = version.data_snapshot.get("snapshot_dir") or dataset.snapshot_dir
    if not snapshot_dir:
        raise RulesError(f"model version {version.pk} records no snapshot of its cases")
    snapshot = Path(snapshot_dir)
    if not (snapshot / "cases.parquet").exists():
        raise RulesError(f"the cases the version was trained on are gone ({snapshot})")
    cases = read_snapshot_cases(snapshot)
    if len(cases) != len(scores) or len(scores) != dataset.n_cases:
        raise RulesError(
            f"model version {version.pk} scored {len(scores)} cases, the dataset has "
            f"{dataset.n_cases}: it belongs to an earlier import"
        )
    states = pool_states(dataset)
    positive = np.isin(states, [PoolState.POSITIVE, PoolState.CONFIRMED])
    known = positive | (states == PoolState.NOT_CONFIRMED)
    extractor = RuleExtractor(
        numeric,
        categorical,
        top_share=params.top_share,
        max_depth=params.max_depth,
        max_rules=params.max_rules,
        random_state=int(version.params.get("random_state", 0) or 0),
    ).fit(cases, scores)
    return {
        "version": version.pk,
        "dataset": dataset.name,
        "params": asdict(params),
        "score_threshold": extractor.threshold_,
        "hand_features": {"numeric": numeric, "categorical": categorical},
        "precision_definition": PRECISION_DEFINITION,
        "n_cases": int(len(cases)),
        "n_known": int(known.sum()),
        "rules": rules_report(extractor.rules_, cases, scores, positive=positive, known=known),
    }


def rules_export(
    *, version: ModelVersion, actor: Any, via: str, params: RuleParams | None = None
) -> dict:
    """:func:`model_version_rules`, audit-logged (``model.rules``) as the rules leave the app."""
    result = model_version_rules(version=version, params=params)
    audit_event_create(
        actor=actor,
        verb="model.rules",
        dataset=version.dataset,
        target=version,
        data={**result["params"], "rules": len(result["rules"])},
        via=via,
    )
    return result
