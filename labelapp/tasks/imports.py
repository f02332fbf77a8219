"""Import of uploaded datasets too large to import while the browser waits."""

from __future__ import annotations

from celery import shared_task
from django.contrib.auth import get_user_model

from labelapp.services.uploads import upload_import


@shared_task(name="labelapp.dataset_import_upload", acks_late=False)
def dataset_import_upload(upload_id: str, name: str, replace: bool, user_id: int | None) -> dict:
    # acks_late off: an import killed half-way rolls back; re-running it blindly is not wanted.
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    return upload_import(upload_id=upload_id, name=name, replace=replace, user=user)
