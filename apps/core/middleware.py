"""Request-scoped correlation id, echoed in the response and available to services."""

import uuid
from contextvars import ContextVar

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
