"""Reads for seed positives: which cases a rule, a list of ids or one case names, what marking
(or unmarking) them would change, and the history of seed changes.

What a change may do (the same rules for the preview and :mod:`labelapp.services.seeds`):

- **mark**: a case in ``U`` (never shown) or ``skipped`` (an expert could not judge it) becomes a
  seed: ``seed_positive`` true, pool state ``P``. A case that is already ``P`` is counted as
  already a seed. A case in an open batch (``shown``) or answered (``confirmed``,
  ``not_confirmed``) is **not changed** and reported: an expert's answer (or the one they are
  about to give) stands; a confirmed case already trains as a positive, and a rule does not
  overrule an expert's "not confirmed".
- **unmark** (``remove``): a seed (``P``) goes back to ``U``; any other case is reported as not
  a seed. A seed held in an open batch as a hidden check of expert recall
  (``BatchItem.is_check``) is left alone and reported until it is answered.

So ``seed_positive`` is true exactly for the cases in ``P``, and ``Dataset.n_seed_positive``
counts them.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from django.db.models import Count, Exists, OuterRef, QuerySet

from labelapp.models import AuditEvent, BatchItem, Case, Dataset, PoolState
from labelapp.selectors.case_expressions import case_expression_filter, case_expression_parse

#: A change touches at most this many cases (seeds are known positives: a rule that matches
#: more is almost surely too broad, and the audit trail keeps every case id it changed).
MAX_SEED_CHANGE = 20_000
SAMPLE_SIZE = 20
MARKABLE = (PoolState.UNLABELED, PoolState.SKIPPED)
SEED_VERBS = ("seeds.mark", "seeds.unmark")
UNDO_VERB = "seeds.undo"
_NOT_CHANGED = {
    PoolState.SHOWN: "in an open batch (the expert's answer decides)",
    PoolState.CONFIRMED: "already confirmed by an expert (trains as a positive)",
    PoolState.NOT_CONFIRMED: "answered not confirmed by an expert (the answer stands)",
}


OPEN_CHECK_REASON = "a hidden check in an open batch (unmark it once it is answered)"


def open_check() -> Exists:
    """True for a case held in an open batch as a hidden check of expert recall."""
    return Exists(
        BatchItem.objects.filter(case=OuterRef("pk"), is_check=True, status=BatchItem.Status.OPEN)
    )


def changeable_cases(cases: QuerySet[Case], *, remove: bool) -> QuerySet[Case]:
    """The cases of ``cases`` a change may touch (see the module's rules)."""
    changeable = cases.filter(pool_state__in=changeable_states(remove))
    return changeable.exclude(open_check()) if remove else changeable


class SeedSourceError(ValueError):
    """A bad rule, an id list with unknown ids, or a change larger than allowed."""

    def __init__(self, message: str, *, unknown_ids: list[str] | None = None):
        self.unknown_ids = unknown_ids or []
        super().__init__(message)


@dataclass(frozen=True)
class SeedSource:
    """Which cases a change is about: exactly one of a rule, a list of case ids, or one case."""

    rule: str = ""
    case_ids: tuple[str, ...] = ()
    case_pk: int | None = None

    def describe(self) -> dict:
        if self.rule:
            return {"rule": self.rule}
        if self.case_pk is not None:
            return {"case": self.case_pk}
        return {"ids": len(self.case_ids)}

    def label(self) -> str:
        if self.rule:
            return f"rule {self.rule}"
        if self.case_pk is not None:
            return "one case"
        return f"a list of {len(self.case_ids)} case ids"


@dataclass
class SeedPreview:
    """What applying a change would do, before it is applied."""

    remove: bool
    n_matched: int = 0
    n_change: int = 0
    n_already: int = 0
    not_changed: dict[str, int] = field(default_factory=dict)
    sample: list[Case] = field(default_factory=list)
    n_seeds_now: int = 0

    @property
    def n_seeds_after(self) -> int:
        return self.n_seeds_now + (-self.n_change if self.remove else self.n_change)


def seed_ids_parse(text: str) -> list[str]:
    """Case ids from an upload: one per line, or a CSV with a ``case_id`` column (else its
    first column). Blank lines and duplicates are dropped; order is kept."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    if "," in lines[0] or ";" in lines[0] or "\t" in lines[0]:
        dialect = csv.Sniffer().sniff(lines[0], delimiters=",;\t")
        rows = list(csv.reader(io.StringIO("\n".join(lines)), dialect))
        header = [h.strip().lower() for h in rows[0]]
        column = header.index("case_id") if "case_id" in header else 0
        has_header = "case_id" in header
        values = [
            row[column].strip() for row in rows[1 if has_header else 0 :] if len(row) > column
        ]
    else:
        values = [line.strip() for line in lines]
        if values[0].lower() == "case_id":
            values = values[1:]
    return list(dict.fromkeys(v for v in values if v))


def seed_source_cases(dataset: Dataset, source: SeedSource) -> QuerySet[Case]:
    """The dataset's cases ``source`` names.

    Raises
    ------
    SeedSourceError
        The rule is outside the language (the message says where), or ids are unknown (all of
        them listed in ``unknown_ids``), or the list is longer than :data:`MAX_SEED_CHANGE`.
    learning.expressions.ExpressionError
        (a ``ValueError`` too) for a rule outside the language.
    """
    cases = dataset.cases.all()
    if source.rule:
        expression = case_expression_parse(dataset, source.rule)
        return cases.filter(case_expression_filter(dataset, expression))
    if source.case_pk is not None:
        return cases.filter(pk=source.case_pk)
    ids = list(source.case_ids)
    if not ids:
        raise SeedSourceError("the list holds no case ids")
    if len(ids) > MAX_SEED_CHANGE:
        raise SeedSourceError(
            f"the list holds {len(ids)} case ids; one change takes at most {MAX_SEED_CHANGE}"
        )
    known: set[str] = set()
    for start in range(0, len(ids), 5000):
        known.update(
            cases.filter(case_id__in=ids[start : start + 5000]).values_list("case_id", flat=True)
        )
    unknown = [i for i in ids if i not in known]
    if unknown:
        shown = ", ".join(unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        raise SeedSourceError(
            f"{len(unknown)} of {len(ids)} case ids are not in dataset {dataset.name}: {shown}. "
            "Nothing was changed; correct the list and try again.",
            unknown_ids=unknown,
        )
    return cases.filter(case_id__in=ids)


def changeable_states(remove: bool) -> tuple[str, ...]:
    return (PoolState.POSITIVE,) if remove else MARKABLE


def seed_preview(dataset: Dataset, source: SeedSource, *, remove: bool = False) -> SeedPreview:
    """Counts by outcome and a sample of the cases that would change (see the module's rules)."""
    cases = seed_source_cases(dataset, source)
    by_state = dict(cases.order_by().values_list("pool_state").annotate(n=Count("id")))
    preview = SeedPreview(remove=remove, n_seeds_now=dataset.n_seed_positive)
    preview.n_matched = sum(by_state.values())
    target = changeable_states(remove)
    for state, n in by_state.items():
        if state in target:
            preview.n_change += n
        elif remove or state == PoolState.POSITIVE:
            preview.n_already += n  # already a seed (mark), or already not one (unmark)
        else:
            reason = _NOT_CHANGED.get(state, state)
            preview.not_changed[reason] = preview.not_changed.get(reason, 0) + n
    if remove and preview.n_change:
        held = cases.filter(pool_state=PoolState.POSITIVE).filter(open_check()).count()
        if held:
            preview.n_change -= held
            preview.not_changed[OPEN_CHECK_REASON] = held
    sample = changeable_cases(cases, remove=remove) if preview.n_change else cases
    preview.sample = list(sample.with_shown_scores(dataset).order_by("row")[:SAMPLE_SIZE])
    return preview


def seed_changes(dataset: Dataset, *, limit: int = 50) -> list[AuditEvent]:
    """The dataset's latest seed changes, newest first, each with ``undone_by`` (its undo event
    or None)."""
    events = list(
        AuditEvent.objects.filter(dataset=dataset, verb__in=(*SEED_VERBS, UNDO_VERB))
        .select_related("actor")
        .order_by("-created_at", "-id")[: limit * 2]
    )
    undos = {e.target_id: e for e in events if e.verb == UNDO_VERB}
    changes = [e for e in events if e.verb in SEED_VERBS][:limit]
    for event in changes:
        event.undone_by = undos.get(str(event.pk))
    return changes
