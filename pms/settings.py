"""Project settings, read from the environment (django-environ); `.env` is optional.

Every variable is listed in `.env.example` and the README's configuration table.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import environ
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    env.read_env(str(BASE_DIR / ".env"), overwrite=False)

FERNET_KEY_HELP = (
    "Generate one with: .venv/bin/python -c "
    "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())' "
    "and set FIELD_ENCRYPTION_KEY=<key> in the environment or .env "
    "(`make run` writes one into .env on first run)."
)


def parse_field_encryption_keys(raw: str) -> list[str]:
    """Comma-separated Fernet keys, newest first (older ones only decrypt, for rotation)."""
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    if not keys:
        raise ImproperlyConfigured(f"FIELD_ENCRYPTION_KEY is not set. {FERNET_KEY_HELP}")
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode())
        except (ValueError, TypeError) as exc:
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEY key #{position} is malformed (must be 32 url-safe "
                f"base64-encoded bytes). {FERNET_KEY_HELP}"
            ) from exc
    return keys


def parse_freeze_quantities(raw: str) -> dict[str, int]:
    """`NIFTY=1800,BANKNIFTY=900`: the exchange's largest quantity in one order, per underlying.

    Kite has no API for it (the exchanges change it from time to time), so it is configured.
    """
    table: dict[str, int] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        name, sep, quantity = (text.strip() for text in item.partition("="))
        if not sep or not name or not quantity.isdigit() or int(quantity) <= 0:
            raise ImproperlyConfigured(
                f"FREEZE_QUANTITIES: {item!r} is not UNDERLYING=QUANTITY with a positive whole "
                "quantity (for example NIFTY=1800,BANKNIFTY=900)"
            )
        table[name.upper()] = int(quantity)
    return table


def parse_proxy_ssl_header(raw: str) -> tuple[str, str] | None:
    """`HTTP_X_FORWARDED_PROTO` (value `https`) or `HTTP_X_FORWARDED_PROTO,https`: the header a
    TLS-terminating proxy sets, as Django's SECURE_PROXY_SSL_HEADER. Empty: no proxy header trusted.

    Set it only behind a proxy that always sets (or strips) that header: otherwise any client
    could claim https.
    """
    text = raw.strip()
    if not text:
        return None
    name, _, value = (part.strip() for part in text.partition(","))
    if not name.startswith("HTTP_") or not name[5:].replace("_", "").isalnum() or "," in value:
        raise ImproperlyConfigured(
            f"SECURE_PROXY_SSL_HEADER: {text!r} is not HEADER or HEADER,VALUE with the header in "
            "Django's META form (for example HTTP_X_FORWARDED_PROTO or HTTP_X_FORWARDED_PROTO,https)"
        )
    return name.upper(), value or "https"


SECRET_KEY = env.str("SECRET_KEY", default="")
DEBUG = env.bool("DEBUG", default=False)
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment or .env "
            "(`make run` writes a random one into .env on first run)."
        )
    # DEBUG without a key: a random one per process (sessions end on restart), never a fixed one.
    SECRET_KEY = get_random_secret_key()

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
FIELD_ENCRYPTION_KEY = parse_field_encryption_keys(env.str("FIELD_ENCRYPTION_KEY", default=""))

# --- HTTPS and cookies: secure by default when DEBUG is off, each overridable ------------------
# (README "Running in production"; `make run` writes DEBUG=true, so local http keeps working.)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 365 * 24 * 60 * 60)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_PROXY_SSL_HEADER = parse_proxy_ssl_header(env.str("SECURE_PROXY_SSL_HEADER", default=""))
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SECURE_REFERRER_POLICY = env.str("SECURE_REFERRER_POLICY", default="same-origin")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",  # API tokens: hashed, expiring (accounts.api.tokens)
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "encrypted_model_fields",
    "brokers",
    "accounts",
    "accounts.api.tokens",
    "replication",
]
# The lab (`lab/`: the Kite simulator, the in-memory broker, the benchmark, the soak, the demo and
# their commands) is a development tool, never part of the product: on with DEBUG (what `make run`
# writes) and in the test settings, off in production unless asked for.
LAB_ENABLED = env.bool("LAB_ENABLED", default=DEBUG)
if LAB_ENABLED:
    INSTALLED_APPS.append("lab")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "pms.urls"

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
            ],
        },
    },
]

WSGI_APPLICATION = "pms.wsgi.application"

# --- Database: SQLite (WAL, busy timeout) by default, PostgreSQL via DATABASE_URL -------------
DATABASE_URL = env.str("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,  # busy timeout, seconds
            "transaction_mode": "IMMEDIATE",
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;"
            ),
        }
    )
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
# Broker calls never run inside a transaction: no request-wide atomic block.
DATABASES["default"]["ATOMIC_REQUESTS"] = False

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-in"
TIME_ZONE = "UTC"  # stored and computed in UTC; Asia/Kolkata only at the edges
DISPLAY_TIME_ZONE = "Asia/Kolkata"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []

# --- Sign-in: the product's login page; failed sign-ins locked out (accounts/security.py) -------
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/my/"  # clients: their own accounts; staff go to /staff/ (accounts.login_views)
# Failures within LOGIN_LOCKOUT_SECONDS that lock a username (any door: API, login page, admin) or
# a client address for LOGIN_LOCKOUT_SECONDS; while locked even the right password is refused.
LOGIN_FAILURES_PER_ACCOUNT = env.int("LOGIN_FAILURES_PER_ACCOUNT", default=5)
LOGIN_FAILURES_PER_ADDRESS = env.int("LOGIN_FAILURES_PER_ADDRESS", default=20)
LOGIN_LOCKOUT_SECONDS = env.int("LOGIN_LOCKOUT_SECONDS", default=15 * 60)
# Reverse proxies in front of the web processes that append to X-Forwarded-For. 0: the client is
# REMOTE_ADDR and X-Forwarded-For is ignored (a client can write anything there).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
if min(LOGIN_FAILURES_PER_ACCOUNT, LOGIN_FAILURES_PER_ADDRESS, LOGIN_LOCKOUT_SECONDS) < 1:
    raise ImproperlyConfigured(
        "LOGIN_FAILURES_PER_ACCOUNT, LOGIN_FAILURES_PER_ADDRESS and LOGIN_LOCKOUT_SECONDS must be at least 1"
    )
if TRUSTED_PROXY_COUNT < 0:
    raise ImproperlyConfigured(f"TRUSTED_PROXY_COUNT must be 0 or more, not {TRUSTED_PROXY_COUNT}")

# --- REST API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.api.tokens.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Every error is {code, message, fields}.
    "EXCEPTION_HANDLER": "accounts.api.exceptions.api_exception_handler",
    # Linking and token login are throttled per user (or per IP when anonymous); views opt in
    # with ScopedRateThrottle and a throttle_scope.
    "DEFAULT_THROTTLE_RATES": {"link": "20/min", "login": "10/min"},
    # The rate throttles' client address: REMOTE_ADDR, or X-Forwarded-For behind trusted proxies.
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
}
# API tokens (django-rest-knox): only a hash is stored; each lives API_TOKEN_TTL_HOURS and ends
# earlier when its owner's password changes or the owner revokes it.
API_TOKEN_TTL_HOURS = env.int("API_TOKEN_TTL_HOURS", default=24)
if API_TOKEN_TTL_HOURS < 1:
    raise ImproperlyConfigured(f"API_TOKEN_TTL_HOURS must be at least 1, not {API_TOKEN_TTL_HOURS}")
REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=API_TOKEN_TTL_HOURS),
    "AUTO_REFRESH": False,
    "AUTH_HEADER_PREFIX": "Token",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "PMS replication engine API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI assets served from this app (drf-spectacular-sidecar), never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- django-q2 --------------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
Q_CLUSTER: dict[str, object] = {
    "name": "pms",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": 50,  # seconds a task may run; must stay below `retry`
    "retry": 120,  # seconds before an unacknowledged task is handed out again
    "max_attempts": 1,  # order-placing work is never retried automatically
    "catch_up": False,  # never replay missed schedules after downtime
    "ack_failures": True,
    "save_limit": 1000,
    "label": "Task queue",
    "sync": env.bool("Q_SYNC", default=False),
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- Cache, shared by every web process: sign-in failure counts and API rate throttles ----------
# The database cache (table `pms_cache`, created by `migrate`), or Redis when REDIS_URL is set.
CACHES: dict[str, dict[str, object]] = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL, "KEY_PREFIX": "pms"}
        if REDIS_URL
        else {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "pms_cache",
            # Room for every live counter (the default culls a third of the rows past 300 entries).
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    )
}

# --- Engine -----------------------------------------------------------------------------------
POLL_INTERVAL = env.float("POLL_INTERVAL", default=1.0)
# run_orchestrator prints the ticks that did something and one heartbeat line this often (seconds).
ENGINE_HEARTBEAT_SECONDS = 60
KITE_API_ROOT = env.str("KITE_API_ROOT", default="https://api.kite.trade")
KITE_TIMEOUT_S = env.float("KITE_TIMEOUT_S", default=7.0)
KITE_ALGO_ID = env.str("KITE_ALGO_ID", default="")
KITE_MARKET_PROTECTION = env.int("KITE_MARKET_PROTECTION", default=-1)  # -1: Kite picks the band
# Freeze quantity per underlying (NIFTY=1800,BANKNIFTY=900): an override of the freeze-quantity
# table staff keep in the admin (Brokers -> Freeze quantities; empty by default). For brokers whose
# instrument list has none (Kite, Angel One): orders above it are sliced. A broker's own figure (the
# paper exchange's instruments) wins over both.
FREEZE_QUANTITIES = parse_freeze_quantities(env.str("FREEZE_QUANTITIES", default=""))
# Empty (as unset): Kite's own.
KITE_LOGIN_URL = env.str("KITE_LOGIN_URL", default="") or "https://kite.zerodha.com/connect/login"
KITE_WS_ROOT = env.str("KITE_WS_ROOT", default="") or "wss://ws.kite.trade"
# Angel One SmartAPI (brokers/angel/, docs/angel.md): the API root (scheme://host:port; the Angel
# simulator on loopback for offline runs), the adapter's own timeout, and the scrip master's URL
# (empty: next to a loopback root, else Angel's published OpenAPIScripMaster.json).
ANGEL_API_ROOT = env.str("ANGEL_API_ROOT", default="https://apiconnect.angelone.in")
ANGEL_TIMEOUT_S = env.float("ANGEL_TIMEOUT_S", default=7.0)
ANGEL_SCRIP_MASTER_URL = env.str("ANGEL_SCRIP_MASTER_URL", default="")
# Alice Blue on Ant-A3 TradeHub (brokers/alice/, docs/alice.md): the API base URL (with its trailing
# `/`; the simulator: http://127.0.0.1:8003/), the adapter's own timeout, the V2 contract master
# folder (empty: next to a loopback root, else Alice Blue's published V2 folder), the market
# protection percent sent on MARKET and SL-M orders, and the exchange-approved algo id (<= 12 chars).
ALICE_API_ROOT = env.str("ALICE_API_ROOT", default="https://a3.aliceblueonline.com/")
ALICE_TIMEOUT_S = env.float("ALICE_TIMEOUT_S", default=7.0)
ALICE_CONTRACT_MASTER_URL = env.str("ALICE_CONTRACT_MASTER_URL", default="")
ALICE_MARKET_PROTECTION = env.int("ALICE_MARKET_PROTECTION", default=3)
ALICE_ALGO_ID = env.str("ALICE_ALGO_ID", default="")
# Alice Blue's order feed (master_stream for an Alice Blue master); empty: Alice Blue's own.
ALICE_WS_URL = env.str("ALICE_WS_URL", default="")
# Dhan (brokers/dhan/, docs/dhan.md): the API root (the adapter adds /v2; a loopback root is the
# simulator, which also serves the PIN + TOTP login and the security-id master), the adapter's own
# timeout (the SDK's is 60 s and never raises), the master CSV (empty: next to a loopback root,
# else Dhan's published compact CSV) and the order-update WebSocket.
DHAN_API_ROOT = env.str("DHAN_API_ROOT", default="https://api.dhan.co")
DHAN_TIMEOUT_S = env.float("DHAN_TIMEOUT_S", default=7.0)
DHAN_SCRIP_MASTER_URL = env.str("DHAN_SCRIP_MASTER_URL", default="")
DHAN_WS_ROOT = env.str("DHAN_WS_ROOT", default="wss://api-order-update.dhan.co")
WAKE_FILE = env.str("WAKE_FILE", default=str(BASE_DIR / ".engine-wake"))
SITE_URL = env.str("SITE_URL", default="")  # prefix for links in emails (login check)

# --- Email (the pre-open login check mails staff when EMAIL_HOST is set) -----------------------
EMAIL_HOST = env.str("EMAIL_HOST", default="")
EMAIL_PORT = env.int("EMAIL_PORT", default=587)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=True)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="pms@localhost")
REPLICATION_MODE = env.str("REPLICATION_MODE", default="order")
DRY_RUN = env.bool("DRY_RUN", default=False)
MAX_EVENT_AGE = env.int("MAX_EVENT_AGE", default=300)  # seconds
FANOUT_WORKERS = env.int("FANOUT_WORKERS", default=128)
# Children in an opening group's first wave: sized, claimed and sent before the rest is sized
# (at most FANOUT_WORKERS; 0: no first wave, the group is sized and sent at once).
FANOUT_FIRST_WAVE = env.int("FANOUT_FIRST_WAVE", default=32)
FANOUT_MODE = env.str("FANOUT_MODE", default="threads")  # or "queue": one django-q2 task per shard
FANOUT_SHARDS = env.int("FANOUT_SHARDS", default=4)
QUEUE_REQUEUE_SECONDS = env.int("QUEUE_REQUEUE_SECONDS", default=10)
LEASE_TTL_SECONDS = env.int("LEASE_TTL_SECONDS", default=15)
UNKNOWN_GRACE_SECONDS = env.int("UNKNOWN_GRACE_SECONDS", default=30)
BREAKER_THRESHOLD = env.int("BREAKER_THRESHOLD", default=3)
CHILD_SNAPSHOT_MAX_AGE = env.int("CHILD_SNAPSHOT_MAX_AGE", default=300)
# Convergence (DESIGN §3.7): every so often, re-check every child still holding or entitled, not
# only the rows an order or allocation touched since.
CONVERGE_SWEEP_SECONDS = env.int("CONVERGE_SWEEP_SECONDS", default=60)
# After a failed owed exit, the next attempt waits this long (seconds, one per attempt; the last repeats).
OWED_EXIT_BACKOFF = tuple(env.list("OWED_EXIT_BACKOFF", cast=int, default=[2, 5, 15, 30, 60]))
CHILD_MARGIN_PREFLIGHT = env.bool("CHILD_MARGIN_PREFLIGHT", default=False)
PAPER_LATENCY_MS = env.float("PAPER_LATENCY_MS", default=0.0)
# The paper exchange's margin model (brokers/paper/margin.py): a fraction of the order's value.
PAPER_FUTURES_MARGIN_RATE = Decimal(env.str("PAPER_FUTURES_MARGIN_RATE", default="0.10"))
PAPER_SHORT_OPTION_MARGIN_RATE = Decimal(env.str("PAPER_SHORT_OPTION_MARGIN_RATE", default="0.10"))
PAPER_CNC_MARGIN_RATE = Decimal(env.str("PAPER_CNC_MARGIN_RATE", default="1.00"))
PAPER_MIS_MARGIN_RATE = Decimal(env.str("PAPER_MIS_MARGIN_RATE", default="0.20"))
PAPER_HEDGE_OFFSET_RATE = Decimal(env.str("PAPER_HEDGE_OFFSET_RATE", default="0.70"))
# Where the paper exchange's seed files live (`<shared>/handmade/instruments_sample.csv`, ...).
SHARED_DIR = Path(env.str("SHARED_DIR", default="") or BASE_DIR.parent / "shared")
# The consent terms version new consents are recorded under (accounts' services).
CONSENT_VERSION = env.str("CONSENT_VERSION", default="2026-01")


def server_errors_only(record: logging.LogRecord) -> bool:
    """django.request's filter: a 4xx is already the server's access line (runserver's
    django.server, gunicorn's access log), so only 5xx (with their traceback) pass here."""
    return int(getattr(record, "status_code", 500)) >= 500


LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {
        "server_errors_only": {"()": "django.utils.log.CallbackFilter", "callback": server_errors_only}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "kiteconnect": {"level": "WARNING"},
        # One line per 4xx: the server's access line; django.request keeps the 5xx.
        "django.request": {"filters": ["server_errors_only"]},
    },
}

# --- Production shape (issue 14) ----------------------------------------------------------------
# The web process serves its own static files (whitenoise): run `manage.py collectstatic --noinput`
# into STATIC_ROOT before starting it. With DEBUG on, runserver serves them from the app folders.
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(STATIC_ROOT)))
if not DEBUG:
    MIDDLEWARE.insert(
        MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
        "pms.ops.StaticFilesMiddleware",  # whitenoise
    )
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "pms.ops.StaticFilesStorage"},  # hashed, compressed, cached forever
    }
# A supervisor polls /healthz over plain http on the loopback: never redirected to https.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# /metrics (Prometheus): staff sessions, or `Authorization: Bearer <METRICS_TOKEN>` (empty: no token).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_WINDOW_SECONDS = env.int("METRICS_WINDOW_SECONDS", default=300)  # ticks, latency, orders
METRICS_DRIFT_WINDOW_SECONDS = env.int("METRICS_DRIFT_WINDOW_SECONDS", default=360)  # sweep: 5 min

# Alerts (issue 14) ------------------------------------------------------------------------------
# replication/alerts: a django-q2 task reads the audit log and engine state and mails / messages
# the subscribers (admin: Alerts > subscriptions). Email uses the EMAIL_* settings above.
INSTALLED_APPS.append("replication.alerts")
ALERT_WINDOW_SECONDS = env.int("ALERT_WINDOW_SECONDS", default=900)  # one message per kind and account
ALERT_EXIT_OWED_SECONDS = env.int("ALERT_EXIT_OWED_SECONDS", default=120)  # an exit owed this long
ALERT_LEASE_STALE_SECONDS = env.int("ALERT_LEASE_STALE_SECONDS", default=60)  # lease not renewed
ALERT_SCAN_SECONDS = env.int("ALERT_SCAN_SECONDS", default=5)  # between scanner passes
ALERT_SCAN_SPAN_SECONDS = env.int("ALERT_SCAN_SPAN_SECONDS", default=40)  # one scheduled run (< Q timeout)
ALERT_CHANNEL_TIMEOUT_SECONDS = env.float("ALERT_CHANNEL_TIMEOUT_SECONDS", default=10.0)
ALERT_CLAIM_SECONDS = env.int("ALERT_CLAIM_SECONDS", default=60)  # a claimed delivery is due again after
ALERT_MAX_ATTEMPTS = env.int("ALERT_MAX_ATTEMPTS", default=5)
ALERT_RETRY_SECONDS = tuple(env.list("ALERT_RETRY_SECONDS", cast=int, default=[30, 60, 300, 900]))
ALERT_EMAIL_FROM = env.str("ALERT_EMAIL_FROM", default="") or DEFAULT_FROM_EMAIL
TELEGRAM_API_ROOT = env.str("TELEGRAM_API_ROOT", default="https://api.telegram.org")
TELEGRAM_BOT_TOKEN = env.str("TELEGRAM_BOT_TOKEN", default="")  # secret: never logged
