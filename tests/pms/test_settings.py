"""Start-up configuration: encryption key checks, the django-q2 safety check, database selection."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.test import override_settings

from replication.checks import check_q_cluster

REPO = Path(__file__).resolve().parents[2]


def _import_settings(*, print_expr: str = "", **overrides: str) -> subprocess.CompletedProcess[str]:
    """Import pms.settings in a fresh interpreter; `overrides` win over any ./.env (overwrite=False)."""
    env = {
        **os.environ,
        "SECRET_KEY": "settings-test-secret",
        "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "DATABASE_URL": "sqlite:///:memory:",
        **overrides,
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    code = "import pms.settings as s" + (f"; print({print_expr})" if print_expr else "")
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("raw", ["", " , "])
def test_settings_missing_encryption_key_stops_startup_with_howto(raw):
    result = _import_settings(FIELD_ENCRYPTION_KEY=raw)
    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEY is not set" in result.stderr
    assert "Fernet.generate_key()" in result.stderr


def test_settings_malformed_encryption_key_stops_startup_with_howto():
    good = Fernet.generate_key().decode()
    result = _import_settings(FIELD_ENCRYPTION_KEY=f"{good},not-a-fernet-key")
    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEY key #2 is malformed" in result.stderr
    assert "Fernet.generate_key()" in result.stderr
    assert "not-a-fernet-key" not in result.stderr  # the key itself is never echoed


def test_settings_key_list_is_newest_first():
    new, old = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    result = _import_settings(
        FIELD_ENCRYPTION_KEY=f" {new} , {old} ", print_expr=f"s.FIELD_ENCRYPTION_KEY == [{new!r}, {old!r}]"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_settings_missing_secret_key_without_debug_stops_startup():
    result = _import_settings(SECRET_KEY="", DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_settings_postgres_url_selects_postgresql_engine():
    result = _import_settings(
        DATABASE_URL="postgres://pms:pw@127.0.0.1:5432/pms",
        print_expr="s.DATABASES['default']['ENGINE'], s.DATABASES['default']['NAME'], "
        "s.DATABASES['default']['CONN_MAX_AGE'], s.DATABASES['default']['ATOMIC_REQUESTS']",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["django.db.backends.postgresql", "pms", "60", "False"]


def test_settings_sqlite_url_selects_sqlite_in_wal_mode():
    result = _import_settings(
        DATABASE_URL="sqlite:////tmp/pms-settings-test.sqlite3",
        print_expr="s.DATABASES['default']['ENGINE'], "
        "'journal_mode=WAL' in s.DATABASES['default']['OPTIONS']['init_command']",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["django.db.backends.sqlite3", "True"]


def _q_cluster(**changes: object) -> dict[str, object]:
    return {**settings.Q_CLUSTER, **changes}


def test_q_cluster_check_accepts_shipped_configuration():
    assert check_q_cluster(None) == []


@pytest.mark.parametrize(
    ("changes", "error_id"),
    [
        ({"catch_up": True}, "replication.E001"),
        ({"timeout": 120, "retry": 120}, "replication.E002"),
        ({"timeout": 300, "retry": 120}, "replication.E002"),
        ({"retry": None}, "replication.E002"),
        ({"max_attempts": 0}, "replication.E003"),
        ({"max_attempts": 3}, "replication.E003"),
    ],
)
def test_q_cluster_check_refuses_unsafe_configuration(changes, error_id):
    with override_settings(Q_CLUSTER=_q_cluster(**changes)):
        errors = check_q_cluster(None)
    assert [e.id for e in errors] == [error_id]


def test_q_cluster_check_refuses_missing_keys_that_default_unsafely():
    conf = {k: v for k, v in settings.Q_CLUSTER.items() if k not in {"catch_up", "max_attempts"}}
    with override_settings(Q_CLUSTER=conf):
        ids = sorted(e.id for e in check_q_cluster(None))
    assert ids == ["replication.E001", "replication.E003"]


def test_q_cluster_check_is_registered_with_django_checks():
    from django.core import checks

    with override_settings(Q_CLUSTER=_q_cluster(catch_up=True)):
        errors = checks.run_checks()
    assert "replication.E001" in [e.id for e in errors]


_ENV_READ = re.compile(
    r"""env\.(?:str|bool|int|float|list|json|url|db_url|path)\(\s*["']([A-Z_][A-Z0-9_]*)["']"""
)


def test_every_setting_variable_is_documented_in_env_example_and_readme():
    read = set(_ENV_READ.findall((REPO / "pms" / "settings.py").read_text()))
    assert {"SECRET_KEY", "FIELD_ENCRYPTION_KEY", "DATABASE_URL"} <= read  # the pattern still matches
    example = (REPO / ".env.example").read_text()
    readme = (REPO / "README.md").read_text()
    missing_example = sorted(v for v in read if not re.search(rf"^#? ?{v}=", example, re.MULTILINE))
    missing_readme = sorted(v for v in read if f"`{v}`" not in readme)
    assert missing_example == []
    assert missing_readme == []


def test_env_example_ships_no_real_key():
    example = (REPO / ".env.example").read_text()
    assert re.search(r"^FIELD_ENCRYPTION_KEY=$", example, re.MULTILINE)
    assert re.search(r"^SECRET_KEY=$", example, re.MULTILINE)
