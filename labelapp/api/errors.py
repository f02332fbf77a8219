"""Errors as JSON that say what is wrong, in one shape for every endpoint.

Every error body is::

    {"status": 400, "code": "invalid", "detail": "score_min: A valid number is required.",
     "errors": {"score_min": ["A valid number is required."]}}

``detail`` is one readable sentence; ``errors`` (only for invalid input) maps each offending field
(``non_field_errors`` for the input as a whole) to its messages.

Errors raised inside an endpoint go through :func:`api_exception_handler` (DRF). Everything
else under ``/api/`` answers in the same shape too: an unknown path or a malformed id
(``/api/cases/abc/``) reaches :func:`api_not_found` (the API's last URL pattern), an exception
no handler caught becomes a JSON 500 in :class:`ApiErrorMiddleware` (in DEBUG as well), and the
project's error handlers (``handler400`` ... ``handler500`` in ``labelapp/urls.py``) answer JSON
for ``/api/`` paths.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import (
    BadRequest,
    ObjectDoesNotExist,
    RequestDataTooBig,
    SuspiciousOperation,
)
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve
from django.views import csrf, defaults
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers, status
from rest_framework.views import exception_handler

#: Where the API is mounted: errors under it are JSON.
API_PREFIX = "/api/"

request_logger = logging.getLogger("django.request")


class Conflict(exceptions.APIException):
    """The request is valid but clashes with the current state (409)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


class Unprocessable(exceptions.APIException):
    """Well-formed input that cannot be used (422): a file that does not parse, a bad model."""

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "The input could not be processed."
    default_code = "unprocessable"


class ImportRefused(exceptions.APIException):
    """The uploaded data has problems; nothing was imported. ``report`` says what and where."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "import_rejected"

    def __init__(self, report: dict):
        self.report = report
        problems = report.get("problems", [])
        lines = [
            f"{p['file']}"
            + (f" column {p['column']}" if p.get("column") else "")
            + f": {p['message']} (x{p['count']})"
            for p in problems[:5]
        ]
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        super().__init__(f"Import rejected, nothing was written: {'; '.join(lines)}{more}")


def _flatten(errors: Any, prefix: str = "") -> list[str]:
    """Readable ``field: message`` lines from DRF's nested error structure."""
    if isinstance(errors, dict):
        lines = []
        for key, value in errors.items():
            name = "" if key in ("non_field_errors", "detail") else str(key)
            lines += _flatten(value, f"{prefix}.{name}" if prefix and name else prefix or name)
        return lines
    if isinstance(errors, list):
        if all(not isinstance(item, dict | list) for item in errors):
            return [f"{prefix}: {item}" if prefix else str(item) for item in errors]
        lines = []
        for index, item in enumerate(errors):
            lines += _flatten(item, f"{prefix}[{index}]")
        return lines
    return [f"{prefix}: {errors}" if prefix else str(errors)]


class TooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


def _from_django(exc: Exception) -> Exception:
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE // (1024 * 1024)
        return TooLarge(
            f"The request body exceeds {limit} MiB (DATA_UPLOAD_MAX_MEMORY_SIZE): send fewer "
            "records per request (files go as multipart uploads, which have no such limit)."
        )
    if isinstance(exc, DataError):
        # Input the database cannot store (out-of-range numbers, NUL characters in text).
        return exceptions.ValidationError(
            {"non_field_errors": [f"a value cannot be stored: {str(exc).splitlines()[0]}"]}
        )
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        return exceptions.ValidationError(detail=detail)
    if isinstance(exc, ObjectDoesNotExist):
        return exceptions.NotFound(str(exc) or "Not found.")
    if isinstance(exc, Http404):
        return exceptions.NotFound(str(exc) or "Not found.")
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(str(exc) or None)
    return exc


def api_exception_handler(exc: Exception, context: dict):
    """DRF's handler, with Django's errors translated and every body in one shape."""
    exc = _from_django(exc)
    response = exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
    else:
        code = "error"
    body: dict[str, Any] = {"status": response.status_code, "code": code}
    if isinstance(exc, exceptions.ValidationError):
        errors = data if isinstance(data, dict) else {"non_field_errors": data}
        body["code"] = "invalid"
        body["detail"] = "Invalid input: " + "; ".join(_flatten(errors))
        body["errors"] = errors
    elif isinstance(data, dict) and "detail" in data:
        body["detail"] = str(data["detail"])
    else:
        body["detail"] = "; ".join(_flatten(data))
    if isinstance(exc, ImportRefused):
        body["report"] = exc.report
    response.data = body
    return response


class ErrorSerializer(serializers.Serializer):
    """The error body (for the schema)."""

    status = serializers.IntegerField()
    code = serializers.CharField()
    detail = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.JSONField(), required=False, help_text="Per field, its messages."
    )
    report = serializers.JSONField(
        required=False, help_text="Import only: every problem found, by file and column."
    )


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """Schema entries for the error statuses an endpoint can answer."""
    text = {
        400: "Invalid input; `errors` says which field and why.",
        401: "No or invalid credentials.",
        403: "Authenticated, but the role does not allow this.",
        404: "No such object (or not visible to this user).",
        409: "Conflicts with the current state.",
        413: "Too large.",
        422: "Well-formed but unusable input.",
        429: "Throttled; retry after the `Retry-After` header's seconds.",
    }
    return {code: OpenApiResponse(ErrorSerializer, description=text[code]) for code in codes}


# --- errors outside the endpoints -----------------------------------------------------------


def is_api_request(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def api_error_response(status_code: int, code: str, detail: str) -> JsonResponse:
    """A JSON error in the API's shape, for errors that no DRF view handled."""
    return JsonResponse({"status": status_code, "code": code, "detail": detail}, status=status_code)


@csrf_exempt  # a POST to no endpoint is a 404, whatever its cookies
def api_not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    """The API's last URL pattern: no endpoint has this path (or its id is malformed)."""
    detail = f"No API endpoint at {request.path}."
    if not request.path.endswith("/"):
        try:
            match = resolve(request.path + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not api_not_found:
            detail += f" API paths end with a slash: {request.path}/"
    else:
        detail += " Ids in API paths are numbers; see /api/docs/ for the endpoints."
    return api_error_response(404, "not_found", detail)


class ApiErrorMiddleware:
    """Exceptions escaping a view under ``/api/`` become JSON errors (DEBUG's HTML pages too)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if not is_api_request(request):
            return None
        if isinstance(exc, Http404):
            return api_error_response(404, "not_found", str(exc) or "Not found.")
        if isinstance(exc, DjangoPermissionDenied):
            return api_error_response(403, "permission_denied", str(exc) or "Not allowed.")
        if isinstance(exc, BadRequest | SuspiciousOperation):
            return api_error_response(400, "bad_request", str(exc) or "Bad request.")
        if settings.DEBUG_PROPAGATE_EXCEPTIONS:
            return None
        request_logger.error(
            "Internal Server Error: %s", request.path, exc_info=exc, extra={"request": request}
        )
        return _server_error_response()


def _server_error_response() -> JsonResponse:
    return api_error_response(
        500, "server_error", "The server failed on this request; nothing more is known here."
    )


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """``CSRF_FAILURE_VIEW``: JSON under ``/api/``, Django's page elsewhere."""
    if is_api_request(request):
        return api_error_response(403, "csrf_failed", f"CSRF check failed: {reason}")
    return csrf.csrf_failure(request, reason)


def handler400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_api_request(request):
        return api_error_response(400, "bad_request", "Bad request.")
    return defaults.bad_request(request, exception)


def handler403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_api_request(request):
        return api_error_response(403, "permission_denied", str(exception or "") or "Not allowed.")
    return defaults.permission_denied(request, exception)


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_api_request(request):
        return api_not_found(request)
    return defaults.page_not_found(request, exception)


def handler500(request: HttpRequest) -> HttpResponse:
    if is_api_request(request):
        return _server_error_response()
    return defaults.server_error(request)
