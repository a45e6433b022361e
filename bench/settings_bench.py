"""Settings for benchmarks: the product's settings, production-like, plus a trivial view."""

from aifactory.settings.base import *  # noqa: F403

DEBUG = False
ROOT_URLCONF = "bench.urls_bench"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
