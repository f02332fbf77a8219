"""Files that runs killed half way leave behind, removed once they are old (the reaper's job).

A failed iteration removes its own ``.staging-*`` folders (:func:`iteration_fail`) and an inline
import its upload folder; what is left is what a killed process could not clean: staging folders
under ``ARTIFACTS_DIR/models/<dataset>/``, half-written encoder files, upload folders under
``UPLOADS_DIR`` (files and ``status.json``), and beacons of workers that did not stop cleanly.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from django.conf import settings

from labelapp.models import Iteration
from labelapp.workers import beacons_remove_stale

#: Leftovers younger than this are kept (a worker import or a status page may still need them).
LEFTOVER_AGE_S = 24 * 3600.0

_STAGING = re.compile(r"^\.staging-(\d+)-[0-9a-f]+$")


def _newest_mtime(path: Path) -> float:
    """The newest modification time in a folder (the folder's own included)."""
    newest = path.stat().st_mtime
    for child in path.rglob("*"):
        try:
            newest = max(newest, child.stat().st_mtime)
        except OSError:
            continue
    return newest


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def leftovers_remove(*, older_than_s: float = LEFTOVER_AGE_S) -> dict[str, int]:
    """Remove leftovers untouched for ``older_than_s`` seconds; returns how many of each kind.

    A staging folder of an iteration still queued or running is kept, however old.
    """
    cutoff = time.time() - older_than_s
    removed = {"staging": 0, "encoder_tmp": 0, "uploads": 0, "beacons": 0}
    artifacts = Path(settings.ARTIFACTS_DIR)
    active = set(
        Iteration.objects.filter(status__in=Iteration.ACTIVE_STATUSES).values_list("pk", flat=True)
    )
    for path in artifacts.glob("models/*/.staging-*"):
        match = _STAGING.match(path.name)
        if match and int(match.group(1)) in active:
            continue
        if _newest_mtime(path) < cutoff:
            _remove(path)
            removed["staging"] += 1
    for path in artifacts.glob("encoders/*/.encoder-*.pt"):
        if path.stat().st_mtime < cutoff:
            _remove(path)
            removed["encoder_tmp"] += 1
    uploads = Path(settings.UPLOADS_DIR)
    if uploads.is_dir():
        for path in uploads.iterdir():
            if path.is_dir() and _newest_mtime(path) < cutoff:
                _remove(path)
                removed["uploads"] += 1
    removed["beacons"] = beacons_remove_stale(older_than_s=min(older_than_s, 3600.0))
    return removed
