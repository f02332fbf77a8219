"""Iterations of the loop: launch (validated parameters), cancel, retry, and failure bookkeeping.

An iteration runs ``prepare -> embed -> train -> score -> select -> finalize`` in a Celery worker
(:mod:`labelapp.services.pipeline`). This module holds the writes around it: the database's
one-active-iteration constraint turns a second launch into :class:`IterationAlreadyActive`, a run
whose worker died (heartbeat gone stale) becomes ``failed``, and a retry is a new attempt.
"""

from __future__ import annotations

import traceback
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.db.models.functions import Concat
from django.utils import timezone

from labelapp.models import Dataset, Iteration, PoolState
from labelapp.services.audit import audit_event_create
from labelapp.services.dispatch import ITERATION_RUN, task_send
from learning.loop import MIN_POSITIVES, LoopParams, LoopParamsError, ParamInfo


class IterationAlreadyActive(Exception):
    """The dataset already has a queued or running iteration."""

    def __init__(self, active: Iteration | None):
        self.active = active
        which = f" (#{active.number}, {active.status})" if active else ""
        super().__init__(
            f"An iteration is already queued or running on this dataset{which}. "
            "Wait for it to finish or cancel it before launching another."
        )


class IterationParamsError(ValueError):
    """Launch parameters out of range; ``errors`` maps each bad parameter to its message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


# The loop's parameters have one home, learning.loop.LoopParams: the launch form, the API
# serializer, run_iteration's flags and the exported params.json are generated from it.
ParamSpec = ParamInfo
PARAM_SPECS: tuple[ParamInfo, ...] = LoopParams.describe()
PARAMS_BY_NAME = {spec.name: spec for spec in PARAM_SPECS}

HEARTBEAT_INTERVAL_S = float(getattr(settings, "ITERATION_HEARTBEAT_INTERVAL_S", 2.0))
HEARTBEAT_STALE_S = float(getattr(settings, "ITERATION_HEARTBEAT_STALE_S", 30.0))


def default_params(dataset: Dataset | None = None) -> dict[str, Any]:
    """The loop's defaults (:class:`learning.loop.LoopParams`), as a launch starts from."""
    return LoopParams.defaults()


def iteration_params_clean(raw: dict[str, Any], *, dataset: Dataset | None = None) -> dict:
    """Defaults filled in, types coerced, bounds and cross-field rules checked
    (:meth:`learning.loop.LoopParams.from_mapping`), then what the dataset allows.

    Raises
    ------
    IterationParamsError
        With one message per bad parameter.
    """
    try:
        params = LoopParams.from_mapping(raw).to_dict()
    except LoopParamsError as exc:
        raise IterationParamsError(exc.errors) from exc
    errors: dict[str, str] = {}
    if params["use_embeddings"] == "on" and dataset is not None and not dataset.n_events:
        errors["use_embeddings"] = "this dataset has no events to embed (choose auto or off)"
    if params["knn_feature"] and dataset is not None:
        embeddings = params["use_embeddings"] != "off" and bool(dataset.n_events)
        if problem := _knn_feature_problem(dataset, use_embeddings=embeddings):
            errors["knn_feature"] = problem
    if errors:
        raise IterationParamsError(errors)
    return params


def _knn_feature_problem(dataset: Dataset, *, use_embeddings: bool) -> str | None:
    """Why the kNN feature cannot be computed on ``dataset``, or None."""
    from learning.knn_feature import KNN_FEATURE

    numeric = (dataset.schema or {}).get("cases", {}).get("numeric")
    if KNN_FEATURE in (dataset.feature_columns or []):
        return f"the dataset already has a case column named {KNN_FEATURE}"
    if not use_embeddings and numeric is not None and not numeric:
        return "needs embeddings or numeric case columns to find neighbours in"
    return None


def active_iteration(dataset: Dataset) -> Iteration | None:
    return dataset.iterations.filter(status__in=Iteration.ACTIVE_STATUSES).first()


def iteration_launch(
    *,
    dataset: Dataset,
    user: Any = None,
    params: dict[str, Any] | None = None,
    retry_of: Iteration | None = None,
    via: str = "page",
) -> Iteration:
    """Create a queued iteration and enqueue its run once the transaction commits.

    Raises
    ------
    IterationParamsError
        Bad parameters.
    IterationAlreadyActive
        Another iteration of the dataset is queued or running (the database's constraint).
    """
    if dataset.status != Dataset.Status.READY:
        raise IterationParamsError({"dataset": f"dataset is {dataset.status}, not ready"})
    clean = iteration_params_clean(params or {}, dataset=dataset)
    known = dataset.cases.filter(pool_state__in=(PoolState.POSITIVE, PoolState.CONFIRMED)).count()
    if known < MIN_POSITIVES:
        raise IterationParamsError(
            {
                "positives": f"this dataset has {known} known positive(s) (seed or confirmed); "
                f"a PU model needs at least {MIN_POSITIVES}. Mark seed positives first: on the "
                "dataset's Seeds page (a rule, a list of case ids, or case by case), with "
                "manage.py seeds, or a seed_positive column at import."
            }
        )
    iteration_reap_stale(dataset=dataset)
    task_id = str(uuid.uuid4())
    try:
        with transaction.atomic():
            number = (dataset.iterations.aggregate(n=Max("number"))["n"] or 0) + 1
            iteration = Iteration.objects.create(
                dataset=dataset,
                number=number,
                params=clean,
                launched_by=user if getattr(user, "is_authenticated", False) else None,
                retry_of=retry_of,
                task_id=task_id,
                log=_log_line(f"queued by {getattr(user, 'username', 'the shell')}"),
            )
            audit_event_create(
                actor=user,
                verb="iteration.retry" if retry_of else "iteration.launch",
                dataset=dataset,
                target=iteration,
                data={"number": number, "params": clean, "retry_of": getattr(retry_of, "pk", None)},
                via=via,
            )
            transaction.on_commit(lambda: _enqueue(iteration.pk, task_id))
    except IntegrityError as exc:
        active = active_iteration(dataset)
        if active is None and "one_active_iteration" not in str(exc):
            raise
        raise IterationAlreadyActive(active) from exc
    return iteration


def _enqueue(iteration_id: int, task_id: str) -> None:
    task_send(ITERATION_RUN, iteration_id, task_id=task_id)


def iteration_retry(*, iteration: Iteration, user: Any = None, via: str = "page") -> Iteration:
    """A new attempt with the same parameters (only for failed or cancelled iterations)."""
    if iteration.status not in (Iteration.Status.FAILED, Iteration.Status.CANCELLED):
        raise IterationParamsError(
            {"status": "only a failed or cancelled iteration can be retried"}
        )
    return iteration_launch(
        dataset=iteration.dataset, user=user, params=iteration.params, retry_of=iteration, via=via
    )


def iteration_cancel(*, iteration: Iteration, user: Any = None, via: str = "page") -> bool:
    """Cancel a queued or running iteration; the worker stops at its next progress report.

    Returns whether the iteration was still active (False: it had already ended).
    """
    changed = Iteration.objects.filter(
        pk=iteration.pk, status__in=Iteration.ACTIVE_STATUSES
    ).update(
        status=Iteration.Status.CANCELLED,
        finished_at=timezone.now(),
        log=Concat("log", _value(_log_line(f"cancelled by {getattr(user, 'username', '?')}"))),
    )
    if changed:
        audit_event_create(
            actor=user,
            verb="iteration.cancel",
            dataset=iteration.dataset,
            target=iteration,
            via=via,
        )
    iteration.refresh_from_db()
    return bool(changed)


def iteration_fail(
    *, iteration_id: int, error: str, exc: BaseException | None = None, from_status: str = "running"
) -> bool:
    """Mark an active iteration failed with its error (and traceback in the log).

    Its half-written artifacts (the ``.staging-*`` folders of its attempt) go too: a failed
    attempt never publishes them, and a worker killed mid-run cannot remove them itself.
    """
    lines = [f"FAILED: {error}"]
    if exc is not None:
        lines.append("".join(traceback.format_exception(exc)).rstrip())
    changed = Iteration.objects.filter(pk=iteration_id, status=from_status).update(
        status=Iteration.Status.FAILED,
        error=error[:5000],
        finished_at=timezone.now(),
        log=Concat("log", _value(_log_line("\n".join(lines)))),
    )
    if changed:
        from labelapp.services.model_versions import staging_dirs_remove

        failed = Iteration.objects.select_related("dataset").get(pk=iteration_id)
        staging_dirs_remove(failed.dataset, iteration_id)
    return bool(changed)


def iteration_reap_stale(
    *, dataset: Dataset | None = None, stale_after_s: float | None = None
) -> int:
    """Fail running iterations whose worker stopped beating (killed, lost, out of memory).

    Returns how many were marked failed. The previous model version stays current: a model only
    becomes current in the run's last transaction.
    """
    stale_after_s = HEARTBEAT_STALE_S if stale_after_s is None else stale_after_s
    cutoff = timezone.now() - timedelta(seconds=stale_after_s)
    stale = Iteration.objects.filter(status=Iteration.Status.RUNNING).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    )
    if dataset is not None:
        stale = stale.filter(dataset=dataset)
    n = 0
    for iteration in stale:
        last = iteration.heartbeat_at or iteration.started_at
        n += iteration_fail(
            iteration_id=iteration.pk,
            error=f"worker lost: no heartbeat since {last:%Y-%m-%d %H:%M:%S} UTC "
            f"(during stage {iteration.stage or '?'})",
        )
    return n


def iteration_log_append(*, iteration_id: int, text: str) -> None:
    """One line at the end of an iteration's log, whatever its status (helpers, after the end)."""
    Iteration.objects.filter(pk=iteration_id).update(log=Concat("log", _value(_log_line(text))))


def _log_line(text: str) -> str:
    return f"[{timezone.now():%H:%M:%S}] {text}\n"


def _value(text: str):
    from django.db.models import TextField, Value

    return Value(text, output_field=TextField())
