"""The audit trail: every service that changes something important records one event here."""

from __future__ import annotations

from typing import Any

from labelapp.models import AuditEvent, Dataset


def audit_event_create(
    *,
    actor: Any,
    verb: str,
    dataset: Dataset | None = None,
    target: Any = None,
    data: dict[str, Any] | None = None,
    via: str = "page",
) -> AuditEvent:
    actor = actor if getattr(actor, "is_authenticated", False) else None
    return AuditEvent.objects.create(
        actor=actor,
        verb=verb,
        dataset=dataset,
        target_type=type(target).__name__ if target is not None else "",
        target_id=str(getattr(target, "pk", "")) if target is not None else "",
        data=data or {},
        via=via,
    )
