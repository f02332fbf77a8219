"""Streaming import of a dataset folder (SPEC "Dataset format"): read, validate, write.

``reader`` finds and streams the files chunk by chunk, ``validation`` collects every problem into
one :class:`~labelapp.importing.report.ImportReport` before anything is written, ``writers`` bulk
loads the database (``COPY`` on PostgreSQL) and writes the columnar snapshot. The service that
ties them together is :func:`labelapp.services.imports.dataset_import`.
"""
