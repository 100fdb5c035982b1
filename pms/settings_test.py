"""Test settings: a throwaway encryption key per run, synchronous django-q2, fast hashing."""

from __future__ import annotations

import os
import tempfile

from cryptography.fernet import Fernet

os.environ.setdefault("FIELD_ENCRYPTION_KEY", Fernet.generate_key().decode())
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-used-anywhere-else")
os.environ.setdefault("DATABASE_URL", "sqlite:///:memory:")
# The suite is written against the production shape (DEBUG off, as on a fresh clone): the .env
# that `make run` writes for local development (DEBUG=true) must not change what the tests see.
os.environ["DEBUG"] = "false"

from pms.settings import *  # noqa: F403  (test settings extend the real ones)
from pms.settings import INSTALLED_APPS, Q_CLUSTER

# The tests drive the lab (the Kite simulator, the soak, the demo desk), whatever LAB_ENABLED says.
LAB_ENABLED = True
if "lab" not in INSTALLED_APPS:
    INSTALLED_APPS.append("lab")

Q_CLUSTER["sync"] = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# A file-backed test database, so threads of the fan-out see committed rows as in production
# (WAL, busy timeout) instead of a shared-cache in-memory database.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # One file per test process, so parallel runs never share (or delete) each other's database.
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": os.path.join(tempfile.gettempdir(), f"pms-test-{os.getpid()}.sqlite3")
    }

# Broker calls run inline in tests unless a test asks for the concurrent pool explicitly.
FANOUT_WORKERS = 0
UNKNOWN_GRACE_SECONDS = 0
# Owed exits retried at once after a failure (tests tick faster than the production backoff);
# tests of the backoff itself set it.
OWED_EXIT_BACKOFF = (0,)

# The test client speaks plain http; production's redirect to https (on when DEBUG is off) would
# answer every request with a 301. HSTS and secure cookies stay as in production.
SECURE_SSL_REDIRECT = False
