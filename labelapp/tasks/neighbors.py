"""Neighbour index and label-noise audit tasks: thin wrappers over their services."""

from __future__ import annotations

from celery import shared_task

from labelapp.models import Dataset, ModelVersion


@shared_task(name="labelapp.neighbor_index_build")
def neighbor_index_build_task(model_version_id: int) -> dict:
    """Build the neighbour index of one model version (the loop enqueues it after training)."""
    from labelapp.services.similar import neighbor_index_build

    version = ModelVersion.objects.select_related("dataset").filter(pk=model_version_id).first()
    if version is None:
        return {"model_version": model_version_id, "built": False, "why": "no such version"}
    space = neighbor_index_build(model_version=version)
    return {"model_version": model_version_id, "built": True, "method": space["method"]}


@shared_task(name="labelapp.noise_audit_run")
def noise_audit_task(dataset_id: int, user_id: int | None = None) -> dict:
    """Run the label-noise audit of one dataset."""
    from django.contrib.auth import get_user_model

    from labelapp.services.audit_noise import noise_audit_run

    dataset = Dataset.objects.get(pk=dataset_id)
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    return noise_audit_run(dataset=dataset, user=user)
