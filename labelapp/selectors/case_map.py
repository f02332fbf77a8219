"""Reads about a model version's case map: the computed map and the state of its computation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from labelapp.models import ModelVersion

#: The computed map, in the version's artifact folder (written by ``services.case_map``).
MAP_FILE = "case_map.json"
#: While queued or running, and after a failure: ``state``, ``step``, ``message``, ``since``.
STATUS_FILE = "case_map_status.json"


def case_map_path(version: ModelVersion) -> Path:
    return Path(version.artifact_dir) / MAP_FILE


def case_map_status(version: ModelVersion) -> dict[str, Any] | None:
    """The computation's state (``queued``, ``running``, ``failed``), or None when idle."""
    return _read(Path(version.artifact_dir) / STATUS_FILE)


def case_map_summary(version: ModelVersion) -> dict[str, Any] | None:
    """The computed map without its points (for the page), or None when there is none."""
    data = _read(case_map_path(version))
    if data is None:
        return None
    data.pop("points", None)
    return data


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return None
