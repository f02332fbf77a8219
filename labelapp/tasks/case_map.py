"""The case map task: a thin wrapper over :func:`labelapp.services.case_map.case_map_build`."""

from __future__ import annotations

from celery import shared_task

from labelapp.models import ModelVersion


@shared_task(name="labelapp.case_map_build")
def case_map_build_task(model_version_id: int) -> dict:
    """Compute the 2-D map of one model version (enqueued after the iteration, or by an admin)."""
    from labelapp.services.case_map import case_map_build

    version = ModelVersion.objects.select_related("dataset").filter(pk=model_version_id).first()
    if version is None:
        return {"model_version": model_version_id, "built": False, "why": "no such version"}
    result = case_map_build(model_version=version)
    return {
        "model_version": model_version_id,
        "built": True,
        "method": result["method"],
        "points": result["sample_size"],
        "seconds": result["seconds"],
    }
