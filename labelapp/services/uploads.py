"""Uploaded datasets: store the files under ``UPLOADS_DIR/<upload_id>/``, import them (inline or
in a worker), and keep the outcome in ``status.json`` beside them for the status page.

The status lives in a file, not in the import's transaction, so that the page can show progress
while the worker's transaction is still open; web and worker share ``UPLOADS_DIR`` anyway.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from labelapp.importing.reader import CASES, EVENTS, SCHEMA
from labelapp.services.imports import ImportRejected, dataset_import

STATUS_FILE = "status.json"
PROGRESS_EVERY_SECONDS = 0.5


def upload_folder(upload_id: str) -> Path:
    if not upload_id.isalnum():
        raise ValueError("invalid upload id")
    return Path(settings.UPLOADS_DIR) / upload_id


def _target_name(role: str, original: str) -> str:
    if role == SCHEMA:
        return "schema.json"
    suffixes = [s.lower() for s in Path(original).suffixes]
    # A compressed file keeps what it compresses: cases.csv.gz stays a .csv.gz.
    suffix = "".join(suffixes[-2:]) if suffixes[-1:] == [".gz"] else "".join(suffixes[-1:])
    return f"{role}{suffix or '.bin'}"


def upload_save(*, files: Mapping[str, UploadedFile | None]) -> tuple[str, int]:
    """Stream the uploaded files (roles ``cases``, ``events``, ``schema``) to a new folder.

    Returns the upload id and the total size in bytes.
    """
    upload_id = uuid.uuid4().hex
    folder = upload_folder(upload_id)
    folder.mkdir(parents=True)
    total = 0
    for role in (CASES, EVENTS, SCHEMA):
        uploaded = files.get(role)
        if uploaded is None:
            continue
        with open(folder / _target_name(role, uploaded.name), "wb") as out:
            for chunk in uploaded.chunks():
                out.write(chunk)
                total += len(chunk)
    status_write(upload_id, {"state": "queued", "bytes": total})
    return upload_id, total


def status_write(upload_id: str, status: dict[str, Any]) -> None:
    """Replace ``status.json`` atomically (readers never see half a file)."""
    folder = upload_folder(upload_id)
    temporary = folder / f".{STATUS_FILE}.{os.getpid()}"
    temporary.write_text(json.dumps({**status, "updated": time.time()}))
    temporary.replace(folder / STATUS_FILE)


def upload_status(upload_id: str) -> dict[str, Any] | None:
    """The last status of an upload, or None for an unknown id."""
    try:
        return json.loads((upload_folder(upload_id) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None


def upload_import(
    *, upload_id: str, name: str, replace: bool, user: Any = None, discard: bool = False
) -> dict:
    """Import an uploaded folder; returns (and stores) the final status.

    States: ``queued`` -> ``running`` (stage, done, total) -> ``imported`` | ``rejected``
    (with the report) | ``failed`` (with the error). The data files are removed afterwards.
    ``discard``: remove the whole folder, status included, instead of storing the final status
    (an import the caller answers at once, with nobody polling its status later). The folders
    of imports run by a worker, kept for their status page, go after a day
    (:func:`labelapp.services.housekeeping.leftovers_remove`).
    """
    folder = upload_folder(upload_id)
    last = 0.0

    def progress(stage: str, done: int, total: int | None) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_SECONDS or (total and done >= total):
            last = now
            status_write(
                upload_id, {"state": "running", "stage": stage, "done": done, "total": total}
            )

    files = {
        role: path
        for role in (CASES, EVENTS, SCHEMA)
        for path in folder.iterdir()
        if path.name.split(".")[0] == role and not path.name.startswith(".")
    }
    status_write(upload_id, {"state": "running", "stage": "starting", "done": 0, "total": None})
    try:
        dataset = dataset_import(
            name=name, files=files, replace=replace, user=user, progress=progress, via="page"
        )
    except ImportRejected as exc:
        status = {"state": "rejected", "report": exc.report.to_dict()}
    except Exception as exc:  # shown on the page; the worker logs the traceback
        status = {"state": "failed", "error": f"{type(exc).__name__}: {exc}"}
        if discard:
            upload_discard(upload_id)
        else:
            status_write(upload_id, status)
        raise
    else:
        status = {
            "state": "imported",
            "dataset": dataset.name,
            "cases": dataset.n_cases,
            "events": dataset.n_events,
        }
    finally:
        for path in files.values():
            path.unlink(missing_ok=True)
    if discard:
        upload_discard(upload_id)
    else:
        status_write(upload_id, status)
    return status


def upload_discard(upload_id: str) -> None:
    shutil.rmtree(upload_folder(upload_id), ignore_errors=True)
