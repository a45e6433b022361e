"""Suite-wide fixtures: named personas, fail-fast service checks, fast hashing."""

import os
import socket
from urllib.parse import urlparse

import pytest
from django.conf import settings

from tests import factories

pytest_plugins = ["tests.browser", "tests.evaluations.fixtures"]

# Playwright's sync API runs an event loop in the test thread; the ORM calls made
# by tests around it are still synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def pytest_configure(config):
    """A service the run was told to use must answer, or the run fails (never skips)."""
    checks = []
    if os.environ.get("DATABASE_URL"):
        url = urlparse(os.environ["DATABASE_URL"])
        if url.hostname:
            checks.append(("DATABASE_URL", url.hostname, url.port or 5432))
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if broker and not broker.startswith(("filesystem", "memory")):
        url = urlparse(broker)
        default = 6379 if url.scheme.startswith("redis") else 5672
        checks.append(("CELERY_BROKER_URL", url.hostname or "127.0.0.1", url.port or default))
    for name, host, port in checks:
        if not _reachable(host, port):
            pytest.exit(f"{name} points at {host}:{port}, which is not reachable.", returncode=3)


@pytest.fixture(autouse=True)
def _fast_and_isolated(settings, tmp_path):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.CELERY_TASK_ALWAYS_EAGER = True
    # One process here, so per-process memory is a consistent shared cache: exercise the
    # hot-path caching and its invalidation in every test, starting empty.
    settings.HOT_CACHE_SECONDS = 300
    from django.core.cache import cache

    from apps.core import hotcache

    cache.clear()
    hotcache.reset()
    from apps.prompts.services import consumer_counts_reset

    consumer_counts_reset()
    from aifactory.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager = settings.CELERY_TASK_ALWAYS_EAGER


@pytest.fixture
def owner(db):
    """Olivia, a business owner who writes charters."""
    return factories.business_owner("olivia")


@pytest.fixture
def compliance(db):
    """Carl, a compliance officer who reads every charter and decides on submissions."""
    return factories.compliance_officer("carl")


@pytest.fixture
def engineer(db):
    """Pat, a platform engineer with no charter of her own."""
    return factories.platform_engineer("pat")


@pytest.fixture
def outsider(db):
    """Oscar, another business owner who has not been given access to Olivia's charters."""
    return factories.outsider("oscar")


@pytest.fixture
def charter(owner):
    """Olivia's complete draft charter."""
    return factories.CharterFactory(
        business_owner=owner, title="Support reply drafting", slug="support-reply-drafting"
    )


@pytest.fixture
def password():
    return factories.PASSWORD


def pytest_report_header(config):
    db = settings.DATABASES["default"]
    return f"database: {db['ENGINE']} {db.get('HOST') or db['NAME']}; broker: {settings.CELERY_BROKER_URL}"


# Suites whose result does not depend on the database or the broker (they check the same
# contract on any backend): CI runs them once, on the production configuration (PostgreSQL +
# Redis), and leaves them out of the embedded default's run (`make test-backend`).
CONTRACT_PATHS = (
    "tests/security/",
    "tests/core/test_api_fuzz.py",
    "tests/test_hostile_input.py",
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = item.nodeid.replace("\\", "/")
        if path.startswith(CONTRACT_PATHS) or item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.contract)
