"""One iteration of the loop, run by a Celery worker: load -> embed -> features -> train -> score ->
select -> finalize.

Every stage reports its name, done/total and log lines to the ``Iteration`` row (the page polls
it); a heartbeat thread stamps ``heartbeat_at`` so a killed worker is noticed, and notices a
cancel. Nothing the experts or the current model depend on changes before ``finalize``: its one
short transaction writes the batch, the new ``ModelVersion`` and flips ``Dataset.current_model``,
after the version's artifacts (scores included) were written and renamed into place; the scores
lists and filters show follow in one more transaction (``CaseScore`` rows loaded and swapped in:
:func:`labelapp.services.model_versions.case_scores_sync`). A failure anywhere before the flip
leaves the previous model current and the pool untouched.

Scoring and embedding fan out. Scoring: the model and its inputs are written to the staging
folder first, then one Celery task per chunk of rows is enqueued; the running task scores chunks
itself too, each chunk claimed by creating a file exclusively, so one worker alone finishes the
job and more workers finish it sooner (``ARTIFACTS_DIR`` must be shared between workers).
Embedding works the same way over chunks of entities (:mod:`labelapp.services.embedding`).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count
from django.db.models.functions import Concat
from django.utils import timezone

from labelapp.models import BatchItem, Case, Dataset, Iteration, Label, ModelVersion, PoolState
from labelapp.selectors.datasets import snapshot_dir_for
from labelapp.services.audit import audit_event_create
from labelapp.services.case_map import case_map_request
from labelapp.services.checks import batch_with_checks
from labelapp.services.chunks import chunk_claim, claim_is_stale
from labelapp.services.dispatch import ITERATION_SCORE_CHUNK, NEIGHBOR_INDEX_BUILD, task_send
from labelapp.services.embedding import embeddings_compute
from labelapp.services.encoder_pretraining import (
    encoder_place,
    encoder_pretrain,
    encoder_pretrain_request,
)
from labelapp.services.iterations import (
    HEARTBEAT_INTERVAL_S,
    HEARTBEAT_STALE_S,
    _log_line,
    _value,
    iteration_fail,
    iteration_log_append,
)
from labelapp.services.model_versions import (
    artifacts_publish,
    case_scores_sync,
    json_write,
    model_pointer_flip,
    staging_dir_create,
    staging_dirs_remove,
)
from learning.features import dataset_header
from learning.featurespec import (
    DEVIATION_FILE,
    FeatureSpec,
    build_matrix,
    deviation_matrix_cached,
)
from learning.knn_feature import KNN_FEATURE, KNN_FILE
from learning.loop import ActiveLoop, LoopParams

SCORE_CHUNK_ROWS = 250_000
DERIVED_DIR = "derived"  # in a snapshot folder: label-free columns computed once per dataset
PROGRESS_MIN_INTERVAL_S = 0.5
HISTOGRAM_BINS = 20
TOP_FEATURES = 15


class IterationCancelled(Exception):
    pass


# -- progress and heartbeat ----------------------------------------------------------------------
class Reporter:
    """Writes a stage's progress and log lines to the iteration row; beats; notices a cancel."""

    def __init__(self, iteration_id: int):
        self.iteration_id = iteration_id
        self.cancelled = threading.Event()
        self._stop = threading.Event()
        self._last_write = 0.0
        self._thread: threading.Thread | None = None
        self.stage_name = ""
        self.stage_t0 = time.monotonic()
        self.stage_seconds: dict[str, float] = {}

    def _rows(self):
        return Iteration.objects.filter(pk=self.iteration_id, status=Iteration.Status.RUNNING)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="iteration-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _beat(self) -> None:
        try:
            while not self._stop.wait(HEARTBEAT_INTERVAL_S):
                if not self._rows().update(heartbeat_at=timezone.now()):
                    self.cancelled.set()
                    return
        finally:
            connection.close()  # this thread's own connection

    def check(self) -> None:
        if self.cancelled.is_set():
            raise IterationCancelled()

    def stage(self, name: str, total: int = 0, note: str = "") -> None:
        self.check()
        now = time.monotonic()
        if self.stage_name:
            self.stage_seconds[self.stage_name] = round(now - self.stage_t0, 3)
        self.stage_name, self.stage_t0 = name, now
        text = f"stage {name}" + (f": {note}" if note else "")
        if not self._rows().update(
            stage=name,
            progress_done=0,
            progress_total=total,
            stage_started_at=timezone.now(),
            heartbeat_at=timezone.now(),
            log=Concat("log", _value(_log_line(text))),
        ):
            self.cancelled.set()
            raise IterationCancelled()

    def progress(self, done: int, total: int | None = None, *, force: bool = False) -> None:
        self.check()
        now = time.monotonic()
        if not force and now - self._last_write < PROGRESS_MIN_INTERVAL_S:
            return
        self._last_write = now
        fields: dict[str, Any] = {"progress_done": max(int(done), 0)}
        if total is not None:
            fields["progress_total"] = max(int(total), 0)
        self._rows().update(**fields)

    def log(self, text: str) -> None:
        self._rows().update(log=Concat("log", _value(_log_line(text))))

    def finish_stage(self) -> None:
        if self.stage_name:
            self.stage_seconds[self.stage_name] = round(time.monotonic() - self.stage_t0, 3)


# -- the run -------------------------------------------------------------------------------------
@dataclass
class Run:
    """What one attempt carries from stage to stage."""

    iteration: Iteration
    dataset: Dataset
    loop: ActiveLoop
    reporter: Reporter
    snapshot: Path
    staging: Path | None = None
    cases: pd.DataFrame | None = None
    states: np.ndarray | None = None
    spec: FeatureSpec | None = None
    embeddings: np.ndarray | None = None
    embeddings_path: Path | None = None
    encoder_path: Path | None = None
    X: np.ndarray | None = None
    model: Any = None
    scores: np.ndarray | None = None
    selection: Any = None
    metrics: dict[str, Any] = field(default_factory=dict)
    stopping_inputs: dict[str, Any] = field(default_factory=dict)
    answered_batch_rows: list[np.ndarray] = field(default_factory=list)
    last_label_id: int = 0


def iteration_execute(*, iteration_id: int) -> dict[str, Any]:
    """Claim a queued iteration and run it to the end. Safe to call twice for one iteration."""
    now = timezone.now()
    worker = f"{socket.gethostname()} pid {os.getpid()}"
    claimed = Iteration.objects.filter(pk=iteration_id, status=Iteration.Status.QUEUED).update(
        status=Iteration.Status.RUNNING,
        started_at=now,
        heartbeat_at=now,
        stage="load",
        log=Concat("log", _value(_log_line(f"started on {worker}"))),
    )
    if not claimed:
        return _not_claimed(iteration_id)
    _lower_priority()
    iteration = Iteration.objects.select_related("dataset").get(pk=iteration_id)
    reporter = Reporter(iteration_id)
    reporter.start()
    try:
        run = Run(
            iteration=iteration,
            dataset=iteration.dataset,
            loop=ActiveLoop(
                LoopParams.from_mapping(dict(iteration.params)),
                n_jobs=int(getattr(settings, "LOOP_THREADS", 0)) or None,
            ),
            reporter=reporter,
            snapshot=snapshot_dir_for(iteration.dataset),
        )
        for stage in (
            stage_load,
            stage_embed,
            stage_features,
            stage_train,
            stage_score,
            stage_select,
            stage_finalize,
        ):
            stage(run)
        return {"iteration": iteration_id, "status": "done"}
    except IterationCancelled:
        _discard(iteration)
        return {"iteration": iteration_id, "status": "cancelled"}
    except Exception as exc:  # a stage that raises fails the iteration, never the worker
        iteration_fail(iteration_id=iteration_id, error=f"{type(exc).__name__}: {exc}", exc=exc)
        _discard(iteration)
        return {"iteration": iteration_id, "status": "failed", "error": str(exc)}
    finally:
        reporter.stop()


_niced = False


def _lower_priority() -> None:
    """Once per worker process: yield the CPU to web requests (``LOOP_WORKER_NICE``)."""
    global _niced
    increment = int(getattr(settings, "LOOP_WORKER_NICE", 0))
    if not _niced and increment > 0 and hasattr(os, "nice"):
        os.nice(increment)
        _niced = True


def _discard(iteration: Iteration) -> None:
    staging_dirs_remove(iteration.dataset, iteration.pk)


def _not_claimed(iteration_id: int) -> dict[str, Any]:
    """The task arrived for an iteration that is not queued: finished, cancelled, or running.

    Running means a redelivery (the worker that claimed it was killed, or the broker handed the
    message out twice): watch its heartbeat; if it does not move, the first worker is gone.
    """
    iteration = Iteration.objects.filter(pk=iteration_id).first()
    if iteration is None:
        return {"iteration": iteration_id, "status": "missing"}
    if iteration.status != Iteration.Status.RUNNING:
        return {"iteration": iteration_id, "status": iteration.status}
    first_beat = iteration.heartbeat_at
    while True:
        iteration.refresh_from_db(fields=["status", "heartbeat_at"])
        if iteration.status != Iteration.Status.RUNNING:
            return {"iteration": iteration_id, "status": iteration.status}
        if iteration.heartbeat_at != first_beat:
            return {"iteration": iteration_id, "status": "running elsewhere"}
        last = iteration.heartbeat_at or iteration.started_at or timezone.now()
        if (timezone.now() - last).total_seconds() > HEARTBEAT_STALE_S:
            iteration_fail(
                iteration_id=iteration_id,
                error="worker lost: the task was redelivered and the worker that ran it "
                f"stopped beating during stage {iteration.stage or '?'}",
            )
            return {"iteration": iteration_id, "status": "failed"}
        time.sleep(min(1.0, HEARTBEAT_INTERVAL_S))


# -- stages ----------------------------------------------------------------------------------------
def pool_states(dataset: Dataset) -> np.ndarray:
    """Every case's pool state in row order, shape (n_cases,) str."""
    table = Case._meta.db_table
    states = np.full(dataset.n_cases, PoolState.UNLABELED.value, dtype="<U13")
    # Most cases stay unlabeled: read only the others (the (dataset, pool_state) index finds them).
    others = [state.value for state in PoolState if state != PoolState.UNLABELED]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT row, pool_state FROM {table} WHERE dataset_id = %s AND pool_state IN "
            f"({', '.join(['%s'] * len(others))})",
            [dataset.pk, *others],
        )
        while chunk := cursor.fetchmany(100_000):
            rows, values = zip(*chunk, strict=True)
            states[np.fromiter(rows, dtype=np.int64, count=len(rows))] = values
    return states


# Snapshot columns the model never reads: the case's name and the ground truth (benchmarks only).
NOT_MODEL_INPUTS = ("case_id", "label")


def read_snapshot_cases(
    snapshot: Path,
    start: int | None = None,
    stop: int | None = None,
    *,
    model_inputs_only: bool = False,
    columns: list[str] | None = None,
):
    """Raw cases of the snapshot in row order (all, or rows ``start <= row < stop``).

    ``model_inputs_only`` leaves out :data:`NOT_MODEL_INPUTS` (at 11.7M cases the case ids alone
    are about 0.8 GB of Python strings); ``columns`` reads only those (and ``row``).
    """
    import pyarrow.parquet as pq

    filters = None
    if start is not None:
        filters = [("row", ">=", int(start)), ("row", "<", int(stop))]
    path = snapshot / "cases.parquet"
    if columns is not None:
        columns = list(dict.fromkeys([*columns, "row"]))
    elif model_inputs_only:
        columns = [c for c in pq.read_schema(path).names if c not in NOT_MODEL_INPUTS]
    table = pq.read_table(path, columns=columns, filters=filters)
    # self_destruct frees each Arrow column once converted: the peak is about one copy, not two.
    frame = table.to_pandas(split_blocks=True, self_destruct=True)
    del table
    if "row" in frame.columns and not frame["row"].is_monotonic_increasing:
        frame = frame.sort_values("row", kind="stable").reset_index(drop=True)
    return frame


def snapshot_derived_prepare(snapshot: Path) -> Path | None:
    """Compute the snapshot's label-free feature columns for the default loop now (after an
    import), so that the dataset's first iteration reads them like every later one; returns
    their file, or None where the default loop has none (no entity or no time)."""
    loop = ActiveLoop(LoopParams.from_mapping({}))
    head = read_snapshot_cases(snapshot, 0, 1_000, model_inputs_only=True)
    spec = snapshot_feature_spec(loop, snapshot, head)
    if not spec.deviation_columns:
        return None
    needed = [spec.entity_column, spec.ts_column, *spec.deviation_columns]
    cases = read_snapshot_cases(snapshot, columns=needed)
    _, path = deviation_matrix_cached(spec, cases, snapshot / DERIVED_DIR)
    return path


def stage_load(run: Run) -> None:
    rep = run.reporter
    rep.stage("load", note=f"snapshot {run.snapshot}")
    run.cases = read_snapshot_cases(run.snapshot, model_inputs_only=True)
    if len(run.cases) != run.dataset.n_cases:
        raise ValueError(
            f"the snapshot has {len(run.cases)} cases, the database {run.dataset.n_cases}"
        )
    run.last_label_id = (
        Label.objects.filter(case__dataset=run.dataset).order_by("-id").values_list("id", flat=True)
    ).first() or 0
    run.states = pool_states(run.dataset)
    counts = pd.Series(run.states).value_counts().to_dict()
    rep.log(f"{len(run.cases):,} cases; pool {counts}")
    run.staging = staging_dir_create(run.dataset, run.iteration.pk)


def snapshot_feature_spec(
    loop: ActiveLoop,
    snapshot: Path,
    cases: pd.DataFrame,
    *,
    embedding_dim: int = 0,
    sequence_length: int | None = None,
    own_event_columns: int | None = None,
) -> FeatureSpec:
    """The loop's feature spec of the snapshot whose raw ``cases`` are in memory (built from
    them: reading and encoding the snapshot again would double them)."""
    path = snapshot / "schema.json"
    schema = json.loads(path.read_text()) if path.exists() else None
    header = dataset_header(snapshot.name, cases, schema, events_path=_events_file(snapshot))
    return loop.feature_spec(
        header,
        embedding_dim=embedding_dim,
        sequence_length=sequence_length,
        own_event_columns=own_event_columns,
    )


def _events_file(snapshot: Path) -> Path | None:
    for name in ("events.parquet", "events.csv"):
        if (snapshot / name).exists():
            return snapshot / name
    return None


def stage_embed(run: Run) -> None:
    if not run.loop.wants_embeddings(has_events=_events_file(run.snapshot) is not None):
        setting = run.loop.params.use_embeddings
        why = "" if setting == "off" else ", no events"
        run.reporter.log(f"embeddings: off (setting {setting}{why})")
        run.metrics["embeddings"] = {"setting": setting, "used": False}
        return
    from encoders import checkpoint

    rep = run.reporter
    place = encoder_place(run.dataset.pk, run.snapshot)
    encoder = place.encoder
    minutes = run.loop.params.encoder_minutes
    if not encoder.exists() and run.loop.params.use_embeddings == "auto":
        # auto never makes the experts wait for an encoder: this iteration goes on without,
        # a worker pretrains it, the next iterations check it.
        sent = encoder_pretrain_request(place, run.snapshot, minutes=minutes)
        rep.log(
            "embeddings: not this time: no encoder for this data yet; "
            + (
                "a worker pretrains one in the background"
                if sent
                else "a worker is pretraining one"
            )
            + f" (budget {minutes:g} min), the next iterations check whether it helps"
        )
        run.metrics["embeddings"] = {"setting": "auto", "used": False, "encoder": "pretraining"}
        return
    if not encoder.exists():
        budget_s = max(1, round(minutes * 60))
        rep.stage(
            "pretrain",
            total=budget_s,
            note=f"no encoder for this data yet: pretraining for at most {minutes:g} min "
            "(stops earlier once the held-out loss levels off; progress in seconds of that budget)",
        )
        encoder_pretrain(
            place, run.snapshot, minutes=minutes, progress=pretrain_progress(rep, budget_s)
        )
    else:
        rep.log(f"reusing encoder {encoder.name}")
    run.embeddings_path = place.embeddings
    rep.stage("embed", note="chunks of entities, shared with helper tasks")
    run.embeddings = embeddings_compute(
        iteration_id=run.iteration.pk,
        encoder=encoder,
        snapshot=run.snapshot,
        out_path=run.embeddings_path,
        progress=lambda done, total: rep.progress(done, total),
        log=rep.log,
    )
    run.encoder_path = encoder
    config = checkpoint.load_raw(encoder)["config"]
    run.metrics["encoder"] = {
        "file": encoder.name,
        "max_len": config.get("max_len"),
        "own_event_columns": checkpoint.own_event_columns(config),
    }
    rep.log(f"embeddings {run.embeddings.shape} from {encoder.name}")


def pretrain_progress(rep: Reporter, budget_s: int):
    """Pretraining's progress callback: seconds spent of the time budget, out of the budget.

    The encoder reports steps against a total it re-estimates from its speed at every call (the
    first steps are slow), so its totals jump; the budget is known from the start and does not.
    """

    def progress(done: int, total: int, info: dict | None = None) -> None:
        elapsed = (info or {}).get("elapsed_s")
        if elapsed is None:
            rep.progress(done, total)
        else:
            rep.progress(min(int(elapsed), budget_s), budget_s)

    return progress


def stage_features(run: Run) -> None:
    from learning.pool import positive_mask

    rep = run.reporter
    rep.stage("features")
    emb_dim = 0 if run.embeddings is None else int(run.embeddings.shape[1])
    encoder = run.metrics.get("encoder") or {}
    run.spec = snapshot_feature_spec(
        run.loop,
        run.snapshot,
        run.cases,
        embedding_dim=emb_dim,
        sequence_length=encoder.get("max_len"),
        own_event_columns=encoder.get("own_event_columns"),
    )
    if run.loop.params.knn_feature:
        _knn_feature(run)
    positives = run.loop.positives_frame(run.spec, run.cases, positive_mask(run.states))
    deviation = deviation_file = None
    if run.spec.deviation_columns:
        deviation, deviation_file = deviation_matrix_cached(
            run.spec, run.cases, run.snapshot / DERIVED_DIR
        )
    run.X = run.loop.matrix(
        run.spec, run.cases, positives, embeddings=run.embeddings, deviation=deviation
    )
    del deviation
    run.cases = None  # the later stages read the matrix only; free the raw cases for them
    if run.embeddings is not None:
        _decide_embeddings(run)
    staging = run.staging
    positives.reset_index(drop=True).to_parquet(staging / "positives.parquet", index=False)
    run.spec.save(staging / "feature_spec.json")
    if deviation_file is not None:
        # Chunks scored apart (score_chunk) cannot see their entities' earlier cases: keep the
        # entity-deviation columns computed over the whole dataset for them.
        _link_or_copy(deviation_file, staging / DEVIATION_FILE)
    json_write(
        staging / "inputs.json",
        {
            "snapshot": str(run.snapshot),
            "embeddings": str(run.embeddings_path) if run.embeddings_path else None,
        },
    )
    if run.encoder_path is not None:
        shutil.copyfile(run.encoder_path, staging / "encoder.pt")
    rep.log(
        f"feature matrix {run.X.shape}: {', '.join(run.spec.feature_names[:12])}"
        + (" ..." if len(run.spec.feature_names) > 12 else "")
    )


def _link_or_copy(source: Path, target: Path) -> None:
    """``target`` with ``source``'s bytes: a hard link where both share a file system."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _decide_embeddings(run: Run) -> None:
    """The ``auto`` setting: keep the embeddings only where the out-of-fold check finds they help
    (learning.embedding_check); the decision and its figures go to the log and the version."""
    setting = run.loop.params.use_embeddings
    check = run.loop.check_embeddings(run.X, run.states, run.spec)
    used = check is None or check.use
    run.metrics["embeddings"] = {
        "setting": setting,
        "used": used,
        # which of the encoder's columns the model reads (embedding_columns: own_event or all)
        "model_columns": len(run.spec.used_embedding_columns),
        "encoder_columns": run.spec.embedding_dim,
        **({} if check is None else {"check": check.to_dict()}),
    }
    if check is None:
        return
    run.reporter.log(check.summary())
    if not used:
        run.spec, run.X = run.loop.without_embeddings(run.spec, run.X)
        run.embeddings = run.embeddings_path = run.encoder_path = None
        run.metrics.pop("encoder", None)


def _knn_feature(run: Run) -> None:
    """Add the kNN feature to the cases and the spec (issue 8); store it for scoring.

    Known positives are the pool's P (seeds and confirmed answers), never the ground truth; the
    space is the embeddings when the model has them, else its scaled numeric columns.
    """
    from learning.knn_feature import (
        DEFAULT_N_NEIGHBORS,
        knn_index,
        knn_positive_share,
        knn_space,
    )
    from learning.pool import positive_mask

    rep, spec = run.reporter, run.spec
    if KNN_FEATURE in run.cases.columns:
        raise ValueError(f"the cases already have a column named {KNN_FEATURE}")
    started = time.monotonic()
    hand = None
    if run.embeddings is None:
        hand = run.cases[spec.numeric_columns].apply(pd.to_numeric, errors="coerce")
        hand = hand.to_numpy(dtype=np.float32)
    space = knn_space(run.embeddings, hand)
    threads = int(getattr(settings, "LOOP_THREADS", 0)) or os.cpu_count() or 1
    index = knn_index(space, n_jobs=threads, random_state=run.loop.params.random_state)
    share = knn_positive_share(
        index,
        positive_mask(run.states),
        n_neighbors=DEFAULT_N_NEIGHBORS,
        progress=lambda done, total: rep.progress(done, total),
    )
    run.cases[KNN_FEATURE] = share
    spec.knn_neighbors = DEFAULT_N_NEIGHBORS
    np.save(run.staging / KNN_FILE, share)
    info = {
        "k": DEFAULT_N_NEIGHBORS,
        "space": "embeddings" if hand is None else f"{space.shape[1]} scaled numeric columns",
        "method": index.method_,
        "ef_search": index.ef_search_ if index.method_ == "hnsw" else None,
        "mean_share": round(float(share.mean()), 5),
        "seconds": round(time.monotonic() - started, 2),
    }
    run.metrics["knn_feature"] = info
    rep.log(
        f"kNN feature {KNN_FEATURE}: k={info['k']} in {info['space']}, {info['method']} search, "
        f"mean {info['mean_share']:.4f}, {info['seconds']:.1f}s"
    )


def stage_train(run: Run) -> None:
    from learning.pool import positive_mask
    from learning.pu import shares_budget

    rep, p = run.reporter, run.loop.params
    n_positive = int(positive_mask(run.states).sum())
    bags = p.two_step().n_bags_for(n_positive)
    rounds = 2 * p.em_rounds * bags
    kind = "sharing one model's trees" if shares_budget(n_positive, bags) else "few positives"
    rep.stage(
        "train",
        total=rounds,
        note=f"{n_positive:,} positives, {len(run.states) - n_positive:,} unlabeled, "
        f"{rounds} EM rounds" + (f" ({bags} bags of randomized trees: {kind})" if bags > 1 else ""),
    )
    model = run.loop.fit(
        run.X,
        run.states,
        categorical_features=run.spec.categorical_indices,
        progress=lambda done, total: rep.progress(done, total),
    )
    run.model = model
    for h in getattr(model, "history_", []):
        rep.log(
            "  bag {bag} step {step} round {round}: {n_train:,} cases, U target mean {t:.4f}, "
            "{seconds:.1f}s".format(
                t=h.get("target_mean_unlabeled", float("nan")),
                **{k: h.get(k, 0) for k in ("bag", "step", "round", "n_train", "seconds")},
            )
        )
    model.booster_.save_model(str(run.staging / "model.txt"))
    rep.log(f"spy threshold {model.spy_threshold_:.5f}")


def score_chunk_rows() -> int:
    return int(getattr(settings, "LOOP_SCORE_CHUNK_ROWS", 0)) or SCORE_CHUNK_ROWS


def chunk_plan(n_rows: int, chunk_rows: int | None = None) -> list[tuple[int, int]]:
    chunk_rows = chunk_rows or score_chunk_rows()
    return [(a, min(a + chunk_rows, n_rows)) for a in range(0, n_rows, chunk_rows)] or [(0, 0)]


def score_chunk(staging: Path, start: int, stop: int, X: np.ndarray | None = None) -> np.ndarray:
    """Score rows ``start:stop`` with the staged model; writes ``scores/<start>.npy``.

    Without ``X`` the rows' features are rebuilt from the snapshot with the staged spec and
    positives: exactly what the export bundle's scorer does.
    """
    import lightgbm as lgb

    if X is None:
        inputs = json.loads((staging / "inputs.json").read_text())
        spec = FeatureSpec.load(staging / "feature_spec.json")
        cases = read_snapshot_cases(Path(inputs["snapshot"]), start, stop)
        positives = pd.read_parquet(staging / "positives.parquet")
        emb = deviation = None
        if inputs.get("embeddings"):
            emb = np.load(inputs["embeddings"], mmap_mode="r")[start:stop]
        if spec.deviation_columns:
            deviation = np.load(staging / DEVIATION_FILE, mmap_mode="r")[start:stop]
        if spec.knn_neighbors:
            cases[KNN_FEATURE] = np.load(staging / KNN_FILE, mmap_mode="r")[start:stop]
        X = build_matrix(spec, cases, positives=positives, embeddings=emb, deviation=deviation)
    booster = lgb.Booster(model_file=str(staging / "model.txt"))
    scores = booster.predict(X).astype(np.float64)
    out = staging / "scores" / f"{start}.npy"
    tmp = out.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, scores)
    tmp.replace(out)
    return scores


def stage_score(run: Run) -> None:
    rep = run.reporter
    n = run.dataset.n_cases
    chunks = chunk_plan(n)
    rows = score_chunk_rows()
    rep.stage("score", total=n, note=f"{len(chunks)} chunk(s) of up to {rows:,} rows")
    folder = run.staging / "scores"
    folder.mkdir(exist_ok=True)
    if len(chunks) > 1:
        for start, stop in chunks[1:]:
            task_send(ITERATION_SCORE_CHUNK, run.iteration.pk, str(run.staging), start, stop)
    done = 0
    for start, stop in chunks:
        if chunk_claim(folder / f"{start}.claim"):
            score_chunk(run.staging, start, stop, X=run.X[start:stop])
            done += stop - start
            rep.progress(_rows_scored(folder, chunks), n)
    while (finished := _rows_scored(folder, chunks)) < n:
        rep.progress(finished, n)
        for start, stop in chunks:
            claim = folder / f"{start}.claim"
            if not (folder / f"{start}.npy").exists() and claim_is_stale(claim):
                claim.touch()
                score_chunk(run.staging, start, stop, X=run.X[start:stop])
        time.sleep(0.2)
    run.scores = np.concatenate([np.load(folder / f"{start}.npy") for start, _ in chunks])
    rep.progress(n, n, force=True)
    rep.log(f"scored {n:,} cases ({done:,} here, {n - done:,} by helper tasks)")
    np.save(run.staging / "scores.npy", run.scores.astype(np.float32))
    shutil.rmtree(folder, ignore_errors=True)


def _rows_scored(folder: Path, chunks: list[tuple[int, int]]) -> int:
    return sum(b - a for a, b in chunks if (folder / f"{a}.npy").exists())


def stage_select(run: Run) -> None:
    from learning.pool import offerable_mask

    p, rep = run.loop.params, run.reporter
    rep.stage("select", note=f"batch of {p.batch_size} over {p.n_clusters} clusters")
    # The clusters replace missing values on their candidates' rows only (learning.sampling).
    run.selection = run.loop.select(run.scores, run.X, run.states, iteration=run.iteration.number)
    candidates = offerable_mask(run.states)
    assert candidates[run.selection.indices].all()
    sel = run.selection
    threshold = "" if sel.threshold is None else f" (selection threshold {sel.threshold:.3g})"
    rep.log(f"selected {len(sel.indices)} of {int(candidates.sum()):,} offerable cases{threshold}")
    run.metrics.update(_metrics(run))
    # What the batch's uncertainty and reasons were measured against (not the spy threshold).
    run.metrics["selection_threshold"] = sel.threshold
    run.metrics["selection_threshold_rule"] = sel.threshold_rule


def _metrics(run: Run) -> dict[str, Any]:
    from learning.stopping import stopping_signals

    states, scores, model = run.states, run.scores, run.model
    counts = {state.value: int((states == state.value).sum()) for state in PoolState}
    hist, edges = np.histogram(scores, bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    batches = previous_batches(run.dataset)
    answered = [b for b in batches if b["answered"]]
    previous_scores = _current_model_scores(run.dataset)
    # The estimate of positives left (3 extra two-step fits) follows the batch: experts do not
    # wait for it (_positives_left_follow, after the flip). Until then the signals go without it.
    run.stopping_inputs = {
        "confirmations_per_batch": [b["confirmed"] for b in answered],
        "batch_sizes": [b["answered"] for b in answered],
        "previous_scores": previous_scores,
        "current_scores": scores if previous_scores is not None else None,
        "top_k": min(1000, max(1, len(scores) // 10)),
    }
    run.answered_batch_rows = batch_rows(run.dataset) if answered else []
    signals = stopping_signals(**run.stopping_inputs)
    gains = model.booster_.feature_importance(importance_type="gain")
    order = np.argsort(-gains)[:TOP_FEATURES]
    names = run.spec.feature_names
    clusters = pd.Series(run.selection.cluster).value_counts().sort_index()
    return {
        "n_cases": int(len(states)),
        "n_features": int(run.X.shape[1]),
        "pool": counts,
        "positives": counts["P"] + counts["confirmed"],
        "unlabeled": int((states != "P").sum() - counts["confirmed"]),
        "reliable_negatives": int(np.asarray(model.reliable_negative_mask_).sum()),
        "spies": int(np.asarray(model.spy_mask_).sum()),
        "spy_threshold": float(model.spy_threshold_),
        "positives_found": counts["confirmed"],
        "labels_spent": counts["confirmed"] + counts["not_confirmed"] + counts["skipped"],
        "score_histogram": {"edges": edges.round(4).tolist(), "counts": hist.tolist()},
        "batch_size": int(len(run.selection.indices)),
        "batch_by_cluster": {str(k): int(v) for k, v in clusters.items()},
        "previous_batch": batches[-1] if batches else None,
        "stopping": asdict(signals),
        "positives_left_pending": bool(answered),
        "top_features": [
            {"name": names[i], "gain": round(float(gains[i]), 3)} for i in order if gains[i] > 0
        ],
        "training_history": [
            {k: (float(v) if isinstance(v, np.floating) else v) for k, v in h.items()}
            for h in getattr(model, "history_", [])
        ],
        "last_label_id": run.last_label_id,
    }


def previous_batches(dataset: Dataset) -> list[dict[str, Any]]:
    """Each finished iteration's batch with its answers so far (from the cases' states).

    Hidden checks are left out: their answers measure the experts, not the batch."""
    rows = (
        BatchItem.objects.filter(
            iteration__dataset=dataset, iteration__status="done", is_check=False
        )
        .values("iteration__number", "case__pool_state")
        .annotate(n=Count("id"))
        .order_by("iteration__number")
    )
    by_number: dict[int, dict[str, Any]] = {}
    for row in rows:
        entry = by_number.setdefault(
            row["iteration__number"],
            {
                "iteration": row["iteration__number"],
                "size": 0,
                "confirmed": 0,
                "not_confirmed": 0,
                "skipped": 0,
                "open": 0,
            },
        )
        state = row["case__pool_state"]
        entry["size"] += row["n"]
        key = state if state in ("confirmed", "not_confirmed", "skipped") else "open"
        entry[key] += row["n"]
    for entry in by_number.values():
        entry["answered"] = entry["confirmed"] + entry["not_confirmed"]
    return [by_number[k] for k in sorted(by_number)]


def batch_rows(dataset: Dataset) -> list[np.ndarray]:
    """Each finished iteration's batch as the cases' rows, oldest first (hidden checks left
    out)."""
    rows: dict[int, list[int]] = {}
    items = BatchItem.objects.filter(
        iteration__dataset=dataset, iteration__status="done", is_check=False
    )
    for number, row in items.values_list("iteration__number", "case__row").order_by(
        "iteration__number", "position"
    ):
        rows.setdefault(number, []).append(row)
    return [np.asarray(rows[k], dtype=np.intp) for k in sorted(rows)]


def _current_model_scores(dataset: Dataset) -> np.ndarray | None:
    current = dataset.current_model
    if current is None:
        return None
    path = Path(current.artifact_dir) / "scores.npy"
    if not path.exists():
        return None
    scores = np.load(path)
    return scores if len(scores) == dataset.n_cases else None


def stage_finalize(run: Run) -> None:
    rep = run.reporter
    n = run.dataset.n_cases
    rep.stage(
        "finalize",
        total=n,
        note="artifacts; batch, model and pointer in one transaction; then the shown scores",
    )
    staging = run.staging
    json_write(staging / "params.json", run.loop.params.to_dict())
    json_write(staging / "metrics.json", run.metrics)
    rep.finish_stage()
    run.metrics["stage_seconds"] = dict(run.reporter.stage_seconds)
    final_dir = artifacts_publish(staging)
    run.staging = None
    try:
        with transaction.atomic():
            iteration = Iteration.objects.select_for_update().get(pk=run.iteration.pk)
            if iteration.status != Iteration.Status.RUNNING:
                raise IterationCancelled()
            dataset = Dataset.objects.select_for_update().get(pk=run.dataset.pk)
            version = ModelVersion.objects.create(
                dataset=dataset,
                iteration=iteration,
                parent=dataset.current_model,
                artifact_dir=str(final_dir),
                params=run.loop.params.to_dict(),
                metrics={k: run.metrics[k] for k in _VERSION_METRICS if k in run.metrics},
                data_snapshot=_data_snapshot(run),
                feature_names=run.spec.feature_names,
            )
            n_batch = _batch_create(run, iteration)
            run.metrics["batch_size"] = n_batch
            previous = model_pointer_flip(dataset_id=dataset.pk, version=version)
            # The similar-cases panel needs the new version's neighbour index (issue 8).
            transaction.on_commit(lambda version_id=version.pk: _neighbor_index_enqueue(version_id))
            if getattr(settings, "CASE_MAP_AFTER_ITERATION", True):
                # The version page's map of the cases (issue 16), computed by a worker too.
                case_map_request(model_version=version)
            rep.finish_stage()
            run.metrics["stage_seconds"] = dict(run.reporter.stage_seconds)
            Iteration.objects.filter(pk=iteration.pk).update(
                status=Iteration.Status.DONE,
                model_version=version,
                metrics=run.metrics,
                progress_done=n,
                finished_at=timezone.now(),
                heartbeat_at=timezone.now(),
                log=Concat(
                    "log",
                    _value(
                        _log_line(
                            f"done: model version {version.pk} is current; batch of {n_batch}"
                            + _checks_note(run)
                        )
                    ),
                ),
            )
            audit_event_create(
                actor=iteration.launched_by,
                verb="model.current",
                dataset=dataset,
                target=version,
                data={
                    "from_version": previous,
                    "to_version": version.pk,
                    "iteration": iteration.pk,
                },
                via="worker",
            )
    except BaseException:
        shutil.rmtree(final_dir, ignore_errors=True)
        raise
    _case_scores_follow(run)
    _positives_left_follow(run)


def _checks_note(run: Run) -> str:
    n = run.metrics.get("hidden_checks", 0)
    return f" and {n} hidden check{'s' if n != 1 else ''}" if n else ""


def _case_scores_follow(run: Run) -> None:
    """After the flip: load the new version's scores and swap them in for lists and filters.

    The iteration is already done and its version current; a failure here only leaves lists on
    the previous scores, which :func:`case_scores_sync_pending` (the reaper task) or the next
    flip mends.
    """
    t0 = time.monotonic()
    try:
        synced = case_scores_sync(dataset=run.dataset)
    except Exception as exc:  # noqa: BLE001 - the version is current; report, the reaper resumes
        _log_done_iteration(
            run.iteration.pk, f"showing the new scores failed, to be retried: {exc}"
        )
        return
    what = "shown in lists" if synced else "left to a newer version"
    _log_done_iteration(
        run.iteration.pk, f"case scores {what} {time.monotonic() - t0:.1f}s after the flip"
    )


def _positives_left_follow(run: Run) -> None:
    """After the batch is ready: estimate the positives left in U and complete the iteration's
    stopping signals with it (the iteration page shows "being estimated" meanwhile).

    Runs in the same worker on the matrix in memory. A failure leaves the signals without the
    estimate (as for an iteration before any answer) and says so in the log.
    """
    if not run.metrics.get("positives_left_pending"):
        return
    from learning.stopping import stopping_signals

    t0 = time.monotonic()
    try:
        left = run.loop.positives_left(
            run.X,
            run.states,
            run.answered_batch_rows,
            categorical_features=run.spec.categorical_indices,
        )
        signals = asdict(stopping_signals(**run.stopping_inputs, positives_left=left))
        note = f"positives left in U estimated {time.monotonic() - t0:.1f}s after the batch" + (
            f": {signals['reason']}" if signals["reason"] else ""
        )
    except Exception as exc:  # noqa: BLE001 - the batch is out; report and leave the signals
        signals, note = None, f"estimating the positives left failed: {type(exc).__name__}: {exc}"
    with transaction.atomic():
        iteration = Iteration.objects.select_for_update().get(pk=run.iteration.pk)
        metrics = dict(iteration.metrics or {})
        if signals is not None:
            metrics["stopping"] = signals
        metrics["positives_left_pending"] = False
        metrics["positives_left_seconds"] = round(time.monotonic() - t0, 3)
        iteration.metrics = metrics
        iteration.save(update_fields=["metrics"])
    _log_done_iteration(run.iteration.pk, note)


def _log_done_iteration(iteration_id: int, text: str) -> None:
    iteration_log_append(iteration_id=iteration_id, text=text)


def _neighbor_index_enqueue(version_id: int) -> None:
    task_send(NEIGHBOR_INDEX_BUILD, version_id)


_VERSION_METRICS = (
    "pool",
    "positives",
    "unlabeled",
    "reliable_negatives",
    "spies",
    "spy_threshold",
    "top_features",
    "training_history",
    "n_features",
    "score_histogram",
    "encoder",
    "embeddings",
    "knn_feature",
)


def _data_snapshot(run: Run) -> dict[str, Any]:
    counts = {state.value: int((run.states == state.value).sum()) for state in PoolState}
    return {
        "snapshot_dir": str(run.snapshot),
        "n_cases": int(len(run.states)),
        "pool": counts,
        "labels_used": counts["confirmed"] + counts["not_confirmed"] + counts["skipped"],
        "last_label_id": run.last_label_id,
        "embeddings": run.embeddings_path.name if run.embeddings_path else None,
    }


def _batch_create(run: Run, iteration: Iteration) -> int:
    """BatchItems for the selected cases still offerable now; those cases become ``shown``.

    Hidden checks (:mod:`labelapp.services.checks`) join them at random places; the count
    returned is of the new cases alone.
    """
    sel = run.selection
    rows = [int(r) for r in sel.indices]
    offerable = (PoolState.UNLABELED, PoolState.SKIPPED)
    cases = dict(
        Case.objects.filter(
            dataset=run.dataset, row__in=rows, pool_state__in=offerable
        ).values_list("row", "id")
    )
    items = []
    for position, (row, unc, cluster, rank, reason) in enumerate(
        zip(rows, sel.uncertainty, sel.cluster, sel.rank_in_cluster, sel.reason, strict=True)
    ):
        if row not in cases:
            continue  # answered or shown elsewhere since the states were read
        items.append(
            BatchItem(
                iteration=iteration,
                case_id=cases[row],
                position=position,
                score=float(run.scores[row]),
                uncertainty=float(unc),
                cluster=int(cluster),
                rank_in_cluster=int(rank),
                reason=str(reason)[:200],
            )
        )
    batch, n_checks = batch_with_checks(
        dataset=run.dataset,
        iteration=iteration,
        selection=sel,
        scores=run.scores,
        regular=items,
        random_state=run.loop.params.random_state,
    )
    BatchItem.objects.bulk_create(batch, batch_size=1000)
    # Hidden checks stay P: only the new cases are shown.
    Case.objects.filter(pk__in=[item.case_id for item in items]).update(pool_state=PoolState.SHOWN)
    run.metrics["hidden_checks"] = n_checks
    return len(items)
