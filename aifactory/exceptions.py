"""One DRF exception handler: service errors, validation and permissions look alike.

Body: {"detail": message, "code": code, "errors": {field: [messages]}}.
"""

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from apps.core.errors import ApplicationError

# Connection-level failures: the database is down or unreachable (nothing was committed).
DatabaseUnavailable = (OperationalError, InterfaceError)


def _as_lists(detail) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for key, value in detail.items():
            if isinstance(value, dict) and value and all(str(k).isdigit() for k in value):
                # Newer DRF reports list-serializer errors as {index: errors}.
                for index, item in value.items():
                    for sub, msgs in _as_lists(item).items():
                        out[f"{key}[{index}].{sub}"] = msgs
            elif isinstance(value, dict):
                for sub, msgs in _as_lists(value).items():
                    out[f"{key}.{sub}"] = msgs
            elif isinstance(value, list) and value and isinstance(value[0], dict):
                for index, item in enumerate(value):
                    for sub, msgs in _as_lists(item).items():
                        out[f"{key}[{index}].{sub}"] = msgs
            elif isinstance(value, list):
                out[key] = [str(v) for v in value]
            else:
                out[key] = [str(value)]
        return out
    if isinstance(detail, list):
        return {"non_field_errors": [str(v) for v in detail]}
    return {"non_field_errors": [str(detail)]}


def unavailable_response() -> JsonResponse:
    """503 in the API's shape while the database does not answer; the caller may retry."""
    wait = int(getattr(settings, "API_UNAVAILABLE_RETRY_AFTER", 5))
    response = JsonResponse(
        {
            "detail": "The service is temporarily unavailable; try again shortly.",
            "code": "unavailable",
            "errors": {},
        },
        status=503,
    )
    response["Retry-After"] = str(wait)
    return response


def server_error_response() -> JsonResponse:
    """500 in the API's shape, in every mode: no traceback, no path, no setting."""
    return JsonResponse(
        {"detail": "Internal server error.", "code": "server_error", "errors": {}}, status=500
    )


def api_exception_handler(exc, context):
    if isinstance(exc, DatabaseUnavailable):
        return unavailable_response()
    if isinstance(exc, ApplicationError):
        return Response(
            {"detail": exc.message, "code": exc.code, "errors": exc.errors},
            status=exc.status_code,
        )
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response(
            {
                "detail": f"The request body is larger than {limit:,} bytes: send it in parts "
                "(run outputs also stream as JSONL to outputs.jsonl).",
                "code": "too_large",
                "errors": {},
            },
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)

    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {
            "detail": "Invalid input.",
            "code": "invalid",
            "errors": _as_lists(exc.detail),
        }
        response.status_code = status.HTTP_400_BAD_REQUEST
    elif isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        response.data = {
            "detail": str(exc.detail),
            "code": codes if isinstance(codes, str) else "error",
            "errors": {},
        }
    return response
