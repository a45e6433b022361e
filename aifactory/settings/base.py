"""Settings read from the environment.

With nothing set this is the embedded default: SQLite (WAL) and media under
`var/`, and a filesystem Celery broker that needs no server. `DATABASE_URL`
switches to PostgreSQL; `CELERY_BROKER_URL` to Redis or RabbitMQ.
"""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("AIFACTORY_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# Off unless a developer turns it on (DJANGO_DEBUG=1): with it on, an unhandled error shows
# code and paths to whoever triggers it. `make run` says which mode it runs in.
DEBUG = env_bool("DJANGO_DEBUG", False)
# The embedded default is a developer machine; production.py refuses to start without a real key.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-embedded-default-key-change-me")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "simple_history",
    "django_celery_beat",
    "apps.core",
    "apps.registry",
    "apps.charters",
    "apps.prompts",
    "apps.evaluations",
    "apps.approvals",
    "apps.scorecards",
    "apps.gateway",
    "apps.workspace",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Near the top, so it also answers for what the middleware below raise: JSON 503/500
    # for the API (a plain 503 for pages while the database is down), never a traceback.
    "apps.core.middleware.ApiErrorMiddleware",
    "apps.core.middleware.RefuseNulMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "apps.core.middleware.CorrelationIdMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
]

ROOT_URLCONF = "aifactory.urls"
WSGI_APPLICATION = "aifactory.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.core.context_processors.navigation",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
SQLITE_PATH = VAR_DIR / "aifactory.sqlite3"
DATABASES = {
    "default": dj_database_url.config(
        env="DATABASE_URL", default=f"sqlite:///{SQLITE_PATH}", conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;",
    }
    # A file (not :memory:) so that a real worker process can share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth -----------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None
GUARDIAN_RAISE_403 = False
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "charters:list"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# --- Internationalisation ------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("DJANGO_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static and media ------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns about a missing root
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "media/"
MEDIA_ROOT = VAR_DIR / "media"
# Uploads past 2.5 MB spool to unnamed temporary files (gone with the process, however it ends),
# in FILE_UPLOAD_TEMP_DIR (None: the system's temporary folder).
FILE_UPLOAD_HANDLERS = [
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "apps.core.uploads.UnlinkedFileHandler",
]
FILE_UPLOAD_TEMP_DIR = os.environ.get("AIFACTORY_UPLOAD_TEMP_DIR") or None
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# The embedded default serves static files straight from the app folders (no collectstatic),
# with DEBUG off too; production.py serves the collected, hashed files instead.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- Cache -------------------------------------------------------------------------
# Per-process memory by default; CACHE_URL (redis://…) shares it between processes, which
# production wants for the resolve cache and the buffered consumer counts.
CACHE_URL = os.environ.get("CACHE_URL", "")
CACHES = {
    "default": (
        {"BACKEND": "apps.core.cache.RedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "aifactory"}
    )
}
# Hot-path caching (API keys, permission decisions, resolves) needs a shared cache.
HOT_CACHE_SECONDS = int(os.environ.get("AIFACTORY_HOT_CACHE_SECONDS", "300" if CACHE_URL else "0"))

# --- Brute-force limits -------------------------------------------------------------
# Failed API keys per address, failed sign-ins per address and per user name: at the limit,
# every attempt is refused until the window ends (apps/core/ratelimit.py).
AIFACTORY_AUTH_FAILURE_LIMIT = int(os.environ.get("AIFACTORY_AUTH_FAILURE_LIMIT", "20"))
AIFACTORY_AUTH_FAILURE_WINDOW_SECONDS = int(
    os.environ.get("AIFACTORY_AUTH_FAILURE_WINDOW_SECONDS", "300")
)
# Behind a proxy, the META header holding the address it saw (e.g. HTTP_X_FORWARDED_FOR);
# its right-most entry is used. Empty: REMOTE_ADDR.
AIFACTORY_CLIENT_IP_HEADER = os.environ.get("AIFACTORY_CLIENT_IP_HEADER", "")

# --- E-mail ------------------------------------------------------------------------
EMAIL_BACKEND = os.environ.get(
    "DJANGO_EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend"
)
EMAIL_FILE_PATH = VAR_DIR / "mail"
EMAIL_HOST = os.environ.get("DJANGO_EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("DJANGO_EMAIL_PORT", "25"))
DEFAULT_FROM_EMAIL = os.environ.get("DJANGO_DEFAULT_FROM_EMAIL", "AI Factory <aifactory@localhost>")

# --- History -------------------------------------------------------------------------
SIMPLE_HISTORY_REVERT_DISABLED = True
SIMPLE_HISTORY_ENFORCE_HISTORY_MODEL_PERMISSIONS = True

# --- REST framework ---------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.core.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PARSER_CLASSES": [
        # DRF's, refusing NUL characters in text
        "apps.core.api.parsers.JSONParser",
        "apps.core.api.parsers.FormParser",
        "apps.core.api.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "apps.core.api.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "apps.core.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "aifactory.exceptions.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
# JSON bodies nested deeper than this are refused with a 400 (Python's parser raises
# RecursionError at about 1,000 levels, and code reading what it parsed recurses too).
API_JSON_MAX_DEPTH = 64
# Seconds a client is asked to wait (Retry-After) when the database does not answer.
API_UNAVAILABLE_RETRY_AFTER = 5
SPECTACULAR_SETTINGS = {
    "TITLE": "AI Factory API",
    "DESCRIPTION": "Charters, prompts, evaluations and approvals for governed AI delivery.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Risk tiers and criticality share one scale (low … critical): one schema name.
    "ENUM_NAME_OVERRIDES": {
        "LevelEnum": "apps.charters.choices.RiskTier",
        "CharterStatusEnum": "apps.charters.choices.CharterStatus",
        "PromptStatusEnum": "apps.prompts.choices.PromptStatus",
        "VersionStatusEnum": "apps.prompts.choices.VersionStatus",
        "ArtifactStatusEnum": "apps.evaluations.choices.ArtifactStatus",
        "RunStatusEnum": "apps.evaluations.choices.RunStatus",
        "RaciRoleEnum": "apps.approvals.choices.Role",
        "MetricRoleEnum": "apps.charters.choices.MetricRole",
        "DecisionVerdictEnum": "apps.approvals.choices.Verdict",
        "RunVerdictEnum": "apps.evaluations.choices.Verdict",
    },
}

# --- Model registry --------------------------------------------------------------------------
# The only environment variables ever read for a model call, each bound to one endpoint slug:
# AIFACTORY_MODEL_CREDENTIALS="OPENAI_KEY=openai-eu,ONPREM_KEY=onprem-llm" (docs/OPERATIONS.md).
from apps.registry.credentials import parse as _parse_credentials  # noqa: E402

MODEL_CREDENTIALS = _parse_credentials(os.environ.get("AIFACTORY_MODEL_CREDENTIALS", ""))
# Per risk tier, where a charter's data may go (tiers not named: anywhere the endpoint allows).
REGISTRY_TIER_DATA_LOCATIONS = {"critical": ["on_premises"]}

# --- Celery ------------------------------------------------------------------------------
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://localhost//")
if CELERY_BROKER_URL.startswith("filesystem://"):
    BROKER_DIR.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR),
        "data_folder_out": str(BROKER_DIR),
        "processed_folder": str(BROKER_DIR),
        "store_processed": False,
        # Broadcast (pidbox) files; kombu's default is ./control in the working directory.
        "control_folder": str(BROKER_DIR / "control"),
    }
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# On a lost broker connection, finish the task in hand and write its results (Celery 6 would
# cancel it by default): batches are idempotent, and those whose messages the broker lost are
# re-enqueued by the sweeper (tests/integration/test_faults_services.py).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Every task declares its own soft and hard time limits (apps/*/tasks.py); these are the
# backstop for any task that does not.
CELERY_TASK_SOFT_TIME_LIMIT = 300
CELERY_TASK_TIME_LIMIT = 360

# --- Evaluations -----------------------------------------------------------------------------
# Uploaded models are validated in a child process within these bounds (onnx/sandbox.py).
EVALUATIONS_VALIDATE_TIMEOUT_S = float(os.environ.get("AIFACTORY_VALIDATE_TIMEOUT_S", "60"))
EVALUATIONS_VALIDATE_MEMORY_MB = int(os.environ.get("AIFACTORY_VALIDATE_MEMORY_MB", "2048"))
# A batch task's soft time limit (seconds); generated batches wait on model servers.
EVALUATIONS_BATCH_SOFT_TIME_LIMIT = int(os.environ.get("AIFACTORY_BATCH_TIME_LIMIT", "1500"))
# Cases per batch task; keep a batch far shorter than the broker's visibility timeout.
EVALUATIONS_BATCH_SIZE = int(os.environ.get("AIFACTORY_EVAL_BATCH_SIZE", "250"))
EVALUATIONS_BATCH_MAX_ATTEMPTS = 3
# A claimed batch older than this is presumed lost (worker killed) and re-enqueued.
EVALUATIONS_BATCH_STALE_SECONDS = int(os.environ.get("AIFACTORY_EVAL_STALE_SECONDS", "900"))
# The queue evaluation batches go to ("" = Celery's default). Point GPU workers at their own
# queue (`celery worker -Q eval-gpu`) and start runs with queue="eval-gpu" to use them.
EVALUATIONS_QUEUE = os.environ.get("AIFACTORY_EVAL_QUEUE", "")
EVALUATIONS_DEVICE = os.environ.get("AIFACTORY_EVAL_DEVICE", "auto")  # auto | cpu | cuda
# ONNX Runtime threads per worker process (0: the CPUs it may use / its concurrency).
EVALUATIONS_INTRA_OP_THREADS = int(os.environ.get("AIFACTORY_EVAL_THREADS", "0"))
EVALUATIONS_EMBEDDING_CACHE = int(os.environ.get("AIFACTORY_EVAL_EMBEDDING_CACHE", "50000"))
EVALUATIONS_MAX_ARTIFACT_BYTES = int(
    os.environ.get("AIFACTORY_EVAL_MAX_ARTIFACT_BYTES", str(2 * 1024**3))
)
EVALUATIONS_MAX_DATASET_BYTES = int(
    os.environ.get("AIFACTORY_EVAL_MAX_DATASET_BYTES", str(1024**3))
)
# A model upload's folder unchanged this long, and named by no artifact, is removed by the sweeper.
EVALUATIONS_UPLOAD_LEFTOVER_SECONDS = 3600
EVALUATIONS_QUANTIZATION_FLOOR = float(os.environ.get("AIFACTORY_EVAL_INT8_FLOOR", "0.98"))
EVALUATIONS_GATE_WAIT_SECONDS = int(os.environ.get("AIFACTORY_EVAL_GATE_WAIT", "600"))

# --- Approvals -------------------------------------------------------------------------------
# Hours Consulted people get to answer before the gate stops waiting for them, per risk tier.
APPROVALS_CONSULT_HOURS = {"low": 0, "medium": 0, "high": 24, "critical": 48}
# A passing evaluation of the exact content counts for this many days.
APPROVALS_EVALUATION_VALID_DAYS = int(os.environ.get("AIFACTORY_EVIDENCE_VALID_DAYS", "30"))
APPROVALS_REQUEST_EXPIRY_HOURS = int(
    os.environ.get("AIFACTORY_APPROVAL_EXPIRY_HOURS", str(24 * 14))
)
# Risk tiers whose patch changes may be fast-tracked when their evaluation passes.
APPROVALS_FAST_TRACK_TIERS = ("low",)

# --- Scorecards -------------------------------------------------------------------------------
# Scale when the primary metric has been on track this many consecutive weeks.
SCORECARD_SCALE_WEEKS = int(os.environ.get("AIFACTORY_SCALE_WEEKS", "4"))

# --- Logging ---------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "apps.core.logformat.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            # AIFACTORY_LOG_FORMAT=json: one JSON object per line with the correlation id.
            "formatter": "json" if os.environ.get("AIFACTORY_LOG_FORMAT") == "json" else "plain",
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("DJANGO_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Audit anchoring -------------------------------------------------------------------------
# Checkpoints of the audit chain are signed (HMAC-SHA256) with a key the database never holds,
# appended to an append-only file and logged on `aifactory.audit`. Production keeps the key
# (AIFACTORY_AUDIT_KEY, or a file named by AIFACTORY_AUDIT_KEY_FILE) and the anchor file off the
# database host; the embedded default creates a key file under var/ (0600) on first use.
AUDIT_SIGNING_KEY = os.environ.get("AIFACTORY_AUDIT_KEY", "")
AUDIT_SIGNING_KEY_FILE = Path(
    os.environ.get("AIFACTORY_AUDIT_KEY_FILE", VAR_DIR / "audit-signing.key")
)
# Keys that signed older checkpoints, still accepted when verifying them (after a rotation).
AUDIT_SIGNING_OLD_KEYS = env_list("AIFACTORY_AUDIT_OLD_KEYS")
AUDIT_ANCHOR_FILE = Path(
    os.environ.get("AIFACTORY_AUDIT_ANCHOR_FILE", VAR_DIR / "audit-anchors.jsonl")
)
# The database the checkpoints describe (default: the configured name). Set it when a backup
# is restored under another name, so the restored log is still held against its checkpoints.
AUDIT_ANCHOR_DATABASE = os.environ.get("AIFACTORY_AUDIT_DATABASE", "")
# AIFACTORY_AUDIT_SYSLOG=/dev/log (or host:514) also sends each checkpoint to syslog.
if os.environ.get("AIFACTORY_AUDIT_SYSLOG"):
    _syslog = os.environ["AIFACTORY_AUDIT_SYSLOG"]
    _host, _, _port = _syslog.partition(":")
    LOGGING["handlers"]["audit_syslog"] = {
        "class": "logging.handlers.SysLogHandler",
        "address": _syslog if _syslog.startswith("/") else (_host, int(_port or 514)),
        "formatter": "plain",
    }
    LOGGING["loggers"]["aifactory.audit"] = {"handlers": ["audit_syslog"], "level": "INFO"}
SITE_URL = os.environ.get("AIFACTORY_SITE_URL", "http://127.0.0.1:8000").rstrip("/")

# Periodic work, run by `celery beat` (embedded in the local worker with -B). The schedule
# lives in the database (django-celery-beat) so operators see and change it in the admin;
# these defaults are written there once by `migrate` and never overwrite an operator's edit.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
AIFACTORY_DEFAULT_BEAT_SCHEDULE = {
    "prompt-review-reminders": {
        "task": "apps.prompts.tasks.prompt_review_reminders",
        "schedule": 60 * 60 * 6,
    },
    "evaluation-sweep": {
        "task": "apps.evaluations.tasks.evaluation_sweep",
        "schedule": 60,
    },
    "approvals-expire": {
        "task": "apps.approvals.tasks.approvals_expire_open",
        "schedule": 60 * 15,
    },
    "prompt-sunset-reminders": {
        "task": "apps.prompts.tasks.prompt_sunset_reminders",
        "schedule": 60 * 60 * 24,
    },
    "drift-check": {
        "task": "apps.scorecards.tasks.drift_check",
        "schedule": 60 * 60 * 24,
    },
    "certifications-remind": {
        "task": "apps.approvals.tasks.certifications_remind",
        "schedule": 60 * 60 * 6,
    },
    "audit-checkpoint": {
        "task": "apps.core.tasks.audit_checkpoint",
        "schedule": 60 * 5,
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
DJANGO_CELERY_BEAT_TZ_AWARE = True
