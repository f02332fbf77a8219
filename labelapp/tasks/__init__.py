"""Celery tasks: thin wrappers that take ids and call a service. One module per area."""

from labelapp.tasks.case_map import case_map_build_task  # noqa: F401
from labelapp.tasks.encoders import encoder_pretrain_task  # noqa: F401
from labelapp.tasks.imports import dataset_import_upload  # noqa: F401
from labelapp.tasks.iterations import iteration_run, iteration_score_chunk  # noqa: F401
from labelapp.tasks.neighbors import neighbor_index_build_task, noise_audit_task  # noqa: F401
from labelapp.tasks.system import ping  # noqa: F401
