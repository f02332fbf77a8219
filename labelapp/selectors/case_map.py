"""Reads about a model version's case map: the computed map and the state of its computation."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from django.utils import timezone

from labelapp.models import Case, ModelVersion
from labelapp.policy import cases_visible_to
from labelapp.roles import is_admin
from labelapp.selectors.checks import shown_pool_states

#: The computed map, in the version's artifact folder (written by ``services.case_map``).
MAP_FILE = "case_map.json"
#: While queued or running, and after a failure: ``state``, ``step``, ``message``, ``since``.
STATUS_FILE = "case_map_status.json"
#: A running computation silent this long (its steps take seconds to a few minutes) is dead.
RUNNING_STALE_S = 30 * 60


def case_map_path(version: ModelVersion) -> Path:
    return Path(version.artifact_dir) / MAP_FILE


def case_map_status(version: ModelVersion) -> dict[str, Any] | None:
    """The computation's state (``queued``, ``running``, ``failed``), or None when idle.

    A computation that has said nothing for :data:`RUNNING_STALE_S` lost its worker: it reads
    as failed, so the page stops waiting and an admin can compute the map again.
    """
    status = _read(Path(version.artifact_dir) / STATUS_FILE)
    if status and status.get("state") == "running":
        at = datetime.fromisoformat(status["at"])
        if (timezone.now() - at).total_seconds() > RUNNING_STALE_S:
            status.update(
                state="failed",
                message=f"no news from its worker since {status['at'][11:16]} UTC "
                "(it stopped during: {step}); compute the map again".format(**status),
            )
    return status


def case_map_summary(version: ModelVersion) -> dict[str, Any] | None:
    """The computed map without its points (for the page), or None when there is none."""
    data = _read(case_map_path(version))
    if data is None:
        return None
    data.pop("points", None)
    return data


def case_map_for(version: ModelVersion, user: Any) -> dict[str, Any] | None:
    """The computed map as ``user`` may see it, or None when there is none.

    Admins get every point. Anyone else sees every dot with its state and score, but the id
    and page of a case only when the case is theirs to see (:func:`labelapp.policy.
    cases_visible_to`): ``case`` and ``case_id`` are None for the others. A hidden check of
    expert recall (a seed positive in a batch) shows the state a regular batch case with its
    answers would have, not ``P``, and the counts follow.
    """
    data = _read(case_map_path(version))
    if data is None or is_admin(user):
        return data
    points = data["points"]
    pairs = list(zip(points["case"], points["state"], strict=True))
    as_shown = shown_pool_states(pk for pk, state in pairs if state == "P")
    points["state"] = [as_shown.get(pk, state) for pk, state in pairs]
    data["counts"] = {**Counter(points["state"]), "batch": sum(points["batch"])}
    visible = set(
        cases_visible_to(user, Case.objects.filter(pk__in=points["case"])).values_list(
            "pk", flat=True
        )
    )
    shown = [pk in visible for pk in points["case"]]
    points["case"] = [pk if ok else None for pk, ok in zip(points["case"], shown, strict=True)]
    points["case_id"] = [c if ok else None for c, ok in zip(points["case_id"], shown, strict=True)]
    return data


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return None
