"""Celery tasks: thin wrappers that take ids and call a service. One module per area."""

from labelapp.tasks.system import ping  # noqa: F401
