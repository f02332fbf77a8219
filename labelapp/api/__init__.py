"""The REST API (Django REST Framework): one module per area, mounted at ``/api/`` by ``urls.py``.

Every view is thin: parse input with an ``InputSerializer``, call one service or selector, answer
with an ``OutputSerializer``. Errors come back as JSON (see :mod:`labelapp.api.errors`).
"""
