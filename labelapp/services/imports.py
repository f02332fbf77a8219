"""Import a dataset (SPEC "Dataset format") into the database and its columnar snapshot.

Two streaming passes over the files: validation (every problem into one report, nothing written),
then the write, inside one transaction, with the snapshot built in a temporary folder renamed into
place at the end. Any problem or error leaves no rows, no Dataset and no snapshot behind.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils.text import slugify

from labelapp.importing import reader
from labelapp.importing.report import ImportRejected, ImportReport
from labelapp.importing.validation import ImportPlan, validate_dataset
from labelapp.importing.writers import (
    SnapshotWriter,
    case_inserter,
    event_inserter,
    typed_cases,
    typed_events,
)
from labelapp.models import AuditEvent, Case, Dataset, Event
from labelapp.selectors.datasets import snapshot_dir_for
from labelapp.services.audit import audit_event_create
from labelapp.services.case_scores import case_scores_remove

logger = logging.getLogger(__name__)

__all__ = [
    "ImportRejected",
    "ImportReport",
    "dataset_delete",
    "dataset_delete_rows",
    "dataset_import",
]

Progress = Callable[[str, int, int | None], None]
STALE_TEMPORARY_SECONDS = 24 * 3600
RESERVED_NAMES = {"import"}  # datasets/import/ is the upload page


def _remove_stale_temporaries(root: Path) -> None:
    """Temporary snapshot folders of imports killed without cleanup (a day old or more)."""
    if not root.is_dir():
        return
    now = time.time()
    for folder in root.glob(".importing-*"):
        if now - folder.stat().st_mtime > STALE_TEMPORARY_SECONDS:
            shutil.rmtree(folder, ignore_errors=True)


def _rejected(code: str, message: str) -> ImportRejected:
    report = ImportReport()
    report.add("", code, message)
    return ImportRejected(report)


def _check_name(name: str, replace: bool) -> None:
    if not name or slugify(name) != name.lower() or len(name) > 100 or name in RESERVED_NAMES:
        raise _rejected("invalid_name", f"{name!r} is not a valid name (letters, digits, - and _)")
    if not replace and Dataset.objects.filter(name=name).exists():
        raise _rejected("dataset_exists", f"a dataset named {name!r} exists (use replace)")


def dataset_delete_rows(dataset: Dataset) -> None:
    """Delete a dataset's cases and events and everything that points at its cases, fast.

    Rows referring to cases (labels, batch items, ...) go through the ORM; the cases and events
    themselves, possibly millions, by one ``DELETE`` each. Audit events are kept, detached.
    """
    AuditEvent.objects.filter(dataset=dataset).update(dataset=None)
    case_scores_remove(dataset=dataset)  # whole partitions, before the row-by-row deletes below
    for relation in Case._meta.related_objects:
        related = relation.related_model._default_manager
        related.filter(**{f"{relation.field.name}__dataset": dataset}).delete()
    with connection.cursor() as cursor:
        for model in (Case, Event):
            table = connection.ops.quote_name(model._meta.db_table)
            cursor.execute(f"DELETE FROM {table} WHERE dataset_id = %s", [dataset.pk])


@contextmanager
def _foreign_key_checks_skipped():
    """Skip PostgreSQL's per-row foreign-key triggers while copying the rows in, where allowed.

    Every copied row points at the Dataset created a moment ago in this same transaction, so
    the check (one lookup and row lock per row, deferred to COMMIT by Django's constraints:
    a third of the database's time on 2.3M rows) proves nothing. Only a superuser may switch
    ``session_replication_role`` (as ``pg_restore --disable-triggers`` does); elsewhere the
    checks simply run.
    """
    if connection.vendor != "postgresql":
        yield
        return
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL session_replication_role = replica")
        switched = True
    except DatabaseError:
        switched = False
    yield
    # On an error the (sub)transaction rolls back, and the setting with it.
    if switched:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL session_replication_role = origin")


def dataset_delete(*, dataset: Dataset) -> None:
    """Delete a dataset, its rows, and (once the transaction commits) its snapshot folder."""
    folder = snapshot_dir_for(dataset)
    with transaction.atomic():
        dataset_delete_rows(dataset)
        dataset.delete()
        transaction.on_commit(lambda: shutil.rmtree(folder, ignore_errors=True))


def _write(dataset: Dataset, plan: ImportPlan, folder: Path, progress: Progress | None) -> int:
    """Stream the validated files into the database and the snapshot folder; returns n_events."""
    writer = SnapshotWriter(folder, plan.cases, plan.events)
    start = 0
    with case_inserter(dataset.pk, [c.name for c in plan.cases.features]) as insert:
        for chunk in reader.iter_chunks(plan.cases.source):
            table = writer.case_table(typed_cases(chunk, plan.cases, start))
            writer.write_cases(table)
            insert(table)
            start += table.num_rows
            if progress:
                progress("importing cases", start, plan.cases.n_rows)
    n_events = 0
    if plan.events is not None:
        with event_inserter(dataset.pk, [c.name for c in plan.events.features]) as insert:
            for chunk in reader.iter_chunks(plan.events.source):
                table = writer.event_table(typed_events(chunk, plan.events))
                writer.write_events(table)
                insert(table)
                n_events += table.num_rows
                if progress:
                    progress("importing events", n_events, plan.events.n_rows)
    writer.close(plan.schema)
    return n_events


def dataset_import(
    *,
    name: str,
    source_dir: Path | str | None = None,
    files: Mapping[str, Path] | None = None,
    replace: bool = False,
    user: Any = None,
    progress: Progress | None = None,
    description: str = "",
    via: str = "command",
) -> Dataset:
    """Validate and import a dataset folder (or ``files``: ``{"cases": p, "events": p,
    "schema": p}``) under ``name``.

    Raises
    ------
    ImportRejected
        With the report of every problem found; nothing was written.
    """
    if (source_dir is None) == (files is None):
        raise ValueError("give exactly one of source_dir and files")
    _check_name(name, replace)
    source = Path(source_dir) if source_dir is not None else None
    report, plan = validate_dataset(source_dir=source, files=files, progress=progress)
    if plan is None:
        raise ImportRejected(report)

    root = Path(settings.ARTIFACTS_DIR) / "datasets"
    _remove_stale_temporaries(root)
    temporary = root / f".importing-{uuid.uuid4().hex}"
    final: Path | None = None
    try:
        with transaction.atomic():
            old = Dataset.objects.select_for_update().filter(name=name).first()
            if old is not None:
                if not replace:
                    raise _rejected("dataset_exists", f"a dataset named {name!r} exists")
                dataset_delete(dataset=old)
            dataset = Dataset.objects.create(
                name=name,
                description=description,
                schema=plan.schema,
                feature_columns=[c.name for c in plan.cases.features],
                status=Dataset.Status.IMPORTING,
                created_by=user if getattr(user, "is_authenticated", False) else None,
            )
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL TIME ZONE 'UTC'")
            with _foreign_key_checks_skipped():
                n_events = _write(dataset, plan, temporary, progress)
            # A fresh folder name per import: never a folder of another database's dataset.
            dataset.snapshot_dir = f"datasets/{dataset.pk}-{temporary.name[-8:]}"
            final = snapshot_dir_for(dataset)
            temporary.rename(final)
            dataset.n_cases = plan.cases.n_rows
            dataset.n_events = n_events
            dataset.n_seed_positive = plan.n_seed_positive
            dataset.import_report = report.to_dict()
            dataset.status = Dataset.Status.READY
            dataset.save()
            audit_event_create(
                actor=user,
                verb="dataset.import",
                dataset=dataset,
                target=dataset,
                data={
                    "cases": dataset.n_cases,
                    "events": n_events,
                    "seed_positive": dataset.n_seed_positive,
                    "replaced": old is not None,
                    "files": report.files,
                },
                via=via,
            )
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        if final is not None:
            shutil.rmtree(final, ignore_errors=True)
        raise
    _statistics_refresh()
    _derived_features_prepare(dataset)
    return dataset


#: From this many cases the import computes the label-free feature columns itself: below, the
#: first iteration computes them in well under a second, and loading the learning side here
#: would double a small import's time (1.4 s -> 2.9 s for 10,000 cases).
DERIVED_AT_IMPORT_MIN_CASES = 100_000


def _derived_features_prepare(dataset: Dataset) -> None:
    """The label-free feature columns of the new snapshot, computed now rather than by the
    first iteration (labelapp.services.pipeline.snapshot_derived_prepare). The import stands
    whatever happens here: an iteration computes them itself where the file is missing."""
    if dataset.n_cases < DERIVED_AT_IMPORT_MIN_CASES:
        return
    from labelapp.services.pipeline import snapshot_derived_prepare

    try:
        snapshot_derived_prepare(snapshot_dir_for(dataset))
    except Exception:
        logger.warning("derived features of %s not prepared", dataset, exc_info=True)


def _statistics_refresh() -> None:
    """PostgreSQL: sample the case and event tables now that they changed by a whole dataset.

    Autovacuum gets there eventually; until it does the planner believes a dataset of a million
    cases has a few thousand, and the explorer's score pages (a join walked in index order)
    take seconds instead of milliseconds. Sampling costs well under a second.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Case._meta.db_table}, {Event._meta.db_table}")
