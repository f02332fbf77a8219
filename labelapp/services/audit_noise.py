"""Writes of the label-noise audit: run it, send flags to a second expert, record their answer.

A second look never overwrites the first answer: it is a new ``Label`` with ``via="review"`` and
``review_round=2``, stored beside the first by :func:`labelapp.services.labels.label_create`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from labelapp.models import BatchItem, Case, Dataset, Label, NoiseFlag
from labelapp.roles import is_expert
from labelapp.selectors.audit_noise import expert_answers
from labelapp.selectors.similar import (
    POSITIVE_STATES,
    SPACE_FILE,
    load_neighbor_index,
    neighbor_dir,
    neighbor_inputs,
)
from labelapp.services.audit import audit_event_create
from labelapp.services.labels import label_create
from learning.neighbors import neighbor_matrix
from learning.noise import audit_labels, out_of_fold_scores

#: Cross-fit the out-of-fold model on every positive and at most this many unlabeled cases.
OOF_MAX_UNLABELED = 200_000
#: At most this many flags are kept per audit run (the most suspicious first).
MAX_FLAGS = 2000
#: A flag sent for a second look stays reserved for its reviewer this long.
REVIEW_LEASE = timedelta(days=3)


class ReviewError(Exception):
    """A second look that cannot be sent or stored; the message says why."""


def _pool_states(dataset: Dataset) -> np.ndarray:
    from labelapp.services.pipeline import pool_states

    return pool_states(dataset)


def noise_audit_run(*, dataset: Dataset, user: Any = None) -> dict[str, Any]:
    """Audit the dataset's positives; replaces the open flags of the previous run.

    Positives are the seeds still in P and the confirmed cases. Signals: confident learning on
    out-of-fold LightGBM scores over the hand features, closeness to confidently clean cases in
    the current model's neighbour space (hand features alone without one), and disagreement
    between experts.
    """
    version = dataset.current_model
    states = _pool_states(dataset)
    s = np.isin(states, [state.value for state in POSITIVE_STATES])
    if version is not None:
        hand, _, _ = neighbor_inputs(version)
    else:
        hand = _hand_features_without_model(dataset)
    oof = out_of_fold_scores(hand, s, max_unlabeled=OOF_MAX_UNLABELED, random_state=0)
    space = _neighbor_space(version, hand)
    answers = expert_answers(dataset)
    report = audit_labels(
        s,
        oof_scores=oof,
        neighbor_space=space,
        answers=(answers.rows, answers.users, answers.answers),
    )
    flags = report.flags[:MAX_FLAGS]
    rows = [f.index for f in flags]
    cases = {c.row: c for c in Case.objects.filter(dataset=dataset, row__in=rows)}
    answered = set(
        Label.objects.filter(case__dataset=dataset, case__row__in=rows)
        .exclude(answer=Label.Answer.UNDONE)
        .without_checks()
        .values_list("case__row", flat=True)
    )
    with transaction.atomic():
        NoiseFlag.objects.filter(dataset=dataset, status=NoiseFlag.Status.OPEN).delete()
        pending = set(
            NoiseFlag.objects.filter(dataset=dataset, status=NoiseFlag.Status.SENT).values_list(
                "case__row", flat=True
            )
        )
        created = NoiseFlag.objects.bulk_create(
            NoiseFlag(
                dataset=dataset,
                case=cases[f.index],
                model_version=version,
                kind="answer" if f.index in answered else "seed",
                methods=f.methods,
                reasons=f.reasons,
                suspicion=f.suspicion,
            )
            for f in flags
            if f.index in cases and f.index not in pending
        )
        summary = {
            "positives": int(s.sum()),
            "flags": len(created),
            "estimated_noise_rate": (
                report.confident_learning.noise_rate if report.confident_learning else None
            ),
            "by_method": {
                m: sum(m in f.methods for f in flags)
                for m in ("confident_learning", "near_clean", "expert_disagreement")
            },
        }
        audit_event_create(actor=user, verb="noise.audit", dataset=dataset, data=summary)
    return summary


def _hand_features_without_model(dataset: Dataset) -> np.ndarray:
    import pyarrow.parquet as pq

    from labelapp.selectors.datasets import snapshot_dir_for

    path = snapshot_dir_for(dataset) / "cases.parquet"
    names = [c for c in dataset.schema.get("cases", {}).get("numeric", [])]
    frame = pq.read_table(path).to_pandas()
    if "row" in frame.columns:
        frame = frame.sort_values("row", kind="stable")
    return frame[[c for c in names if c in frame.columns]].to_numpy(np.float32)


def _neighbor_space(version, hand: np.ndarray) -> np.ndarray:
    if version is not None and (neighbor_dir(version) / SPACE_FILE).exists():
        index, _ = load_neighbor_index(str(neighbor_dir(version)))
        if index.n_samples_fit_ == len(hand):
            return index.vectors(np.arange(index.n_samples_fit_))
    return neighbor_matrix(None, hand)[0]


def noise_flags_send_for_review(
    *, user: Any, flags: list[NoiseFlag], reviewer: Any
) -> tuple[int, list[str]]:
    """Send open flags to ``reviewer`` for a second look; returns (sent, reasons for skipped).

    Each flag becomes a batch item of the experts' current batch, reserved for the reviewer,
    that takes one more answer than the case already holds (``required_answers``); a flag on a
    case the reviewer answered already is skipped: the second look must be someone else's.
    """
    if not is_expert(reviewer):
        raise ReviewError(f"{reviewer} is not an expert")
    sent, skipped = 0, []
    now = timezone.now()
    with transaction.atomic():
        for flag in flags:
            flag = NoiseFlag.objects.select_for_update().select_related("case").get(pk=flag.pk)
            if flag.status != NoiseFlag.Status.OPEN:
                skipped.append(f"{flag.case.case_id}: already {flag.get_status_display().lower()}")
                continue
            settled = _settled_labels(flag.case)
            if any(label.user_id == reviewer.pk for label in settled):
                skipped.append(f"{flag.case.case_id}: {reviewer} gave the first answer")
                continue
            try:
                item = _review_item(flag, required=len(settled) + 1, reviewer=reviewer, now=now)
            except ReviewError as exc:
                skipped.append(f"{flag.case.case_id}: {exc}")
                continue
            flag.status = NoiseFlag.Status.SENT
            flag.review_item = item
            flag.reviewer = reviewer
            flag.sent_at = now
            flag.save(update_fields=["status", "review_item", "reviewer", "sent_at"])
            sent += 1
        if sent:
            audit_event_create(
                actor=user,
                verb="noise.review_sent",
                dataset=flags[0].dataset if flags else None,
                data={"sent": sent, "reviewer": str(reviewer), "skipped": skipped},
            )
    return sent, skipped


def _settled_labels(case: Case) -> list[Label]:
    return list(
        Label.objects.filter(
            case=case,
            answer__in=[Label.Answer.CONFIRMED, Label.Answer.NOT_CONFIRMED],
            undone_by__isnull=True,
        ).without_checks()
    )


def _review_item(flag: NoiseFlag, *, required: int, reviewer: Any, now) -> BatchItem:
    from labelapp.services.similar import _batch_iteration

    iteration = _batch_iteration(flag.dataset, user=reviewer, case=flag.case)
    reason = ("second look: " + "; ".join(flag.methods))[:200]
    item = BatchItem.objects.filter(iteration=iteration, case=flag.case).first()
    if item is not None and item.is_check:
        raise ReviewError(
            "a hidden check of the current batch; send it once that batch is answered"
        )
    fields = {
        "required_answers": required,
        "status": BatchItem.Status.OPEN,
        "assigned_to": reviewer,
        "lease_expires_at": now + REVIEW_LEASE,
        "reason": reason,
    }
    if item is None:
        position = (
            BatchItem.objects.filter(iteration=iteration).aggregate(m=Max("position"))["m"] or 0
        ) + 1
        return BatchItem.objects.create(
            iteration=iteration, case=flag.case, position=position, score=flag.case.score, **fields
        )
    for name, value in fields.items():
        setattr(item, name, value)
    item.save(update_fields=list(fields))
    return item


def noise_review_answer(*, user: Any, flag: NoiseFlag, answer: str, comment: str = "") -> Label:
    """Store the reviewer's second look beside the first answer (``via="review"``, round 2)."""
    if flag.status != NoiseFlag.Status.SENT or flag.review_item_id is None:
        raise ReviewError("this flag is not waiting for a second look")
    if flag.reviewer_id != user.pk:
        raise ReviewError("this second look was sent to another expert")
    if answer not in (Label.Answer.CONFIRMED, Label.Answer.NOT_CONFIRMED):
        raise ReviewError("a second look answers confirmed or not confirmed")
    with transaction.atomic():
        label = label_create(
            user=user,
            case=flag.case,
            answer=answer,
            comment=comment,
            via=Label.Via.REVIEW,
            batch_item=flag.review_item,
            review_round=2,
        )
        NoiseFlag.objects.filter(pk=flag.pk).update(status=NoiseFlag.Status.REVIEWED)
    flag.status = NoiseFlag.Status.REVIEWED
    return label


def noise_flag_dismiss(*, user: Any, flag: NoiseFlag) -> None:
    """An admin decides an open flag needs no second look."""
    changed = NoiseFlag.objects.filter(pk=flag.pk, status=NoiseFlag.Status.OPEN).update(
        status=NoiseFlag.Status.DISMISSED
    )
    if changed:
        audit_event_create(actor=user, verb="noise.dismiss", dataset=flag.dataset, target=flag.case)
