"""Request-scoped correlation id, echoed in the response and available to services; and
the refusal of NUL characters, which no text column can store."""

import logging
import re
import sys
import uuid
from contextvars import ContextVar

from django.conf import settings
from django.core.signals import got_request_exception
from django.http import HttpResponse, HttpResponseBadRequest, JsonResponse

logger = logging.getLogger("django.request")

correlation_id: ContextVar[str] = ContextVar("correlation_id", default="")

HEADER = "HTTP_X_REQUEST_ID"


class CorrelationIdMiddleware:
    """Takes X-Request-ID from the caller (or makes one) and returns it on the response."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        value = request.META.get(HEADER, "")[:64] or uuid.uuid4().hex
        token = correlation_id.set(value)
        request.correlation_id = value
        try:
            response = self.get_response(request)
        finally:
            correlation_id.reset(token)
        response["X-Request-ID"] = value
        return response


_task_tokens: dict[str, object] = {}


def task_started(task_id=None, **kwargs) -> None:
    """celery task_prerun: the task id is the correlation id of what the task records."""
    if task_id:
        _task_tokens[task_id] = correlation_id.set(f"task-{task_id}"[:64])


def task_finished(task_id=None, **kwargs) -> None:
    """celery task_postrun: restore the caller's correlation id (eager tasks run inline)."""
    token = _task_tokens.pop(task_id, None)
    if token is not None:
        correlation_id.reset(token)


# A JSON "\u0000" escape: preceded by an even number of backslashes (an odd number would
# make it the literal text "\u0000", which is storable).
JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
NUL_MESSAGE = "Text cannot hold a NUL character (\\u0000): PostgreSQL cannot store it."


def nul_field(items, default: str) -> str | None:
    """The first (field, value or values) pair holding a NUL, by its field name (`default`
    when the name itself is only NUL), or None. Values that are not text (files) pass."""
    for key, values in items:
        values = values if isinstance(values, list) else [values]
        if "\x00" in key or any(isinstance(v, str) and "\x00" in v for v in values):
            return key.replace("\x00", "") or default
    return None


def _nul_in(request) -> str | None:
    """Where the request carries a NUL character as text, or None.

    The path, query string, cookies and web form fields are checked here; API bodies by the
    API's parsers (apps.core.api.parsers), which read them anyway; uploaded files by the
    services that read them (they report the line at fault).
    """
    if "\x00" in request.path:
        return "path"
    fields = [("query", request.GET.lists()), ("cookie", request.COOKIES.items())]
    if request.content_type == "application/x-www-form-urlencoded":
        fields.append(("body", request.POST.lists()))
    for source, items in fields:
        if (field := nul_field(items, source)) is not None:
            return field
    return None


class RefuseNulMiddleware:
    """Answers 400 to text holding NUL: SQLite would store it, PostgreSQL fails with a 500
    wherever it reaches a query (search boxes, filters, JSON fields, reasons)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        where = _nul_in(request)
        if where is None:
            return self.get_response(request)
        if request.path.startswith("/api/"):
            return JsonResponse(
                {"detail": NUL_MESSAGE, "code": "invalid", "errors": {where: [NUL_MESSAGE]}},
                status=400,
            )
        return HttpResponseBadRequest(NUL_MESSAGE, content_type="text/plain; charset=utf-8")


def _remember_exception(sender, request=None, **kwargs) -> None:
    """got_request_exception: keep what escaped, for ApiErrorMiddleware to answer for."""
    if request is not None:
        request.unhandled_exception = sys.exc_info()[1]


got_request_exception.connect(_remember_exception, dispatch_uid="apps.core.remember_exception")


def _unavailable(api: bool) -> HttpResponse:
    from aifactory.exceptions import unavailable_response

    if api:
        return unavailable_response()
    response = HttpResponse(
        "The service is temporarily unavailable; try again shortly.",
        status=503,
        content_type="text/plain; charset=utf-8",
    )
    response["Retry-After"] = str(getattr(settings, "API_UNAVAILABLE_RETRY_AFTER", 5))
    return response


class ApiErrorMiddleware:
    """Errors never answer the API with a traceback or an HTML page: a database that does not
    answer is a JSON 503 with Retry-After (web pages get a plain 503 page), anything else under
    /api/ a JSON 500, in every mode (DEBUG included).

    A view's exception arrives in `process_exception`. One raised by another middleware
    (sessions and authentication query the database) has already been turned into a 500 page,
    DEBUG's with a traceback: placed near the top, this sees that page on its way out and
    answers instead, knowing the exception from the got_request_exception signal."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        replacement = self._replacement(request, response)
        if replacement is None:
            return response
        if response.has_header("X-Request-ID"):
            replacement["X-Request-ID"] = response["X-Request-ID"]
        return replacement

    def _replacement(self, request, response) -> HttpResponse | None:
        api = request.path.startswith("/api/")
        if response.status_code == 500:
            from aifactory.exceptions import DatabaseUnavailable, server_error_response

            if isinstance(getattr(request, "unhandled_exception", None), DatabaseUnavailable):
                return _unavailable(api)
            if api and not response.get("Content-Type", "").startswith("application/json"):
                return server_error_response()
        if (
            api
            and response.status_code == 404
            and response.get("Content-Type", "").startswith("text/html")
        ):
            # DEBUG's technical 404 page (a URL matching nothing) lists the URL patterns.
            return JsonResponse(
                {"detail": "Not found.", "code": "not_found", "errors": {}}, status=404
            )
        return None

    def process_exception(self, request, exception):
        from aifactory.exceptions import DatabaseUnavailable, server_error_response

        api = request.path.startswith("/api/")
        if isinstance(exception, DatabaseUnavailable):
            logger.error("database unavailable on %s: %s", request.path, exception)
            return _unavailable(api)
        if api:
            logger.error(
                "unhandled error on %s",
                request.path,
                exc_info=exception,
                extra={"status_code": 500},
            )
            return server_error_response()
        return None
