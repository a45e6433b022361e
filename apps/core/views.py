"""Health check and the in-app inbox."""

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpResponseNotAllowed, JsonResponse
from django.shortcuts import redirect, render
from django.views import defaults
from django.views.decorators.cache import never_cache

from .models import Notification
from .services import notification_mark_read

BROKER_TIMEOUT_SECONDS = 2


def _database_ok() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"error: {exc.__class__.__name__}: {exc}"
    return "ok"


def _broker_ok() -> str:
    from aifactory.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001
        return f"error: {exc.__class__.__name__}: {exc}"
    return "ok"


@never_cache
def healthz(request):
    """200 when the database and the broker answer, 503 naming the part that failed."""
    checks = {"database": _database_ok(), "broker": _broker_ok()}
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status=200 if healthy else 503,
    )


@login_required
def inbox(request):
    """The signed-in person's notifications, newest first."""
    notes = Notification.objects.filter(recipient=request.user)[:200]
    return render(request, "core/inbox.html", {"notifications": notes})


@login_required
def inbox_mark_read(request):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    notification_mark_read(actor=request.user)
    return redirect("inbox")


def server_error(request):
    """An unhandled error: API clients get the API's error body, people the 500 page."""
    if request.path.startswith("/api/"):
        from aifactory.exceptions import server_error_response

        return server_error_response()
    return defaults.server_error(request)


def page_not_found(request, exception):
    """A URL that matches nothing: API clients get the API's error body, people the 404 page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found.", "code": "not_found", "errors": {}}, status=404)
    return defaults.page_not_found(request, exception)
