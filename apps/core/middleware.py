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
