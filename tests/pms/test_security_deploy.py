"""Production security settings (issue 12 item 5): `check --deploy` is clean with production
settings, the switches come from the environment, and `make run`'s DEBUG .env still serves http."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

BASE_DIR = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(BASE_DIR / "scripts"))
from bootstrap_env import render_env  # noqa: E402  (a script, not a package)

# Variables a developer's shell could carry that would change what is being tested.
SECURITY_VARIABLES = (
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "DJANGO_SETTINGS_MODULE",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_PROXY_SSL_HEADER",
    "CSRF_TRUSTED_ORIGINS",
)

# Run in a subprocess with the real settings (pms.settings, not the test settings): an http GET of
# the admin login page as a browser at `host` would send it, and the settings that decide it.
PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.test import Client
extra = json.loads(__import__("os").environ["PROBE_HEADERS"])
response = Client().get("/admin/login/", HTTP_HOST=__import__("os").environ["PROBE_HOST"], **extra)
print(json.dumps({
    "status": response.status_code,
    "location": response.get("Location", ""),
    "hsts": response.get("Strict-Transport-Security", ""),
    "csrf_cookie_secure": (
        bool(response.cookies["csrftoken"]["secure"]) if "csrftoken" in response.cookies else None
    ),
    "settings": {name: getattr(settings, name) for name in (
        "DEBUG", "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE",
        "SECURE_HSTS_SECONDS", "SECURE_PROXY_SSL_HEADER", "CSRF_TRUSTED_ORIGINS")},
}))
"""


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in SECURITY_VARIABLES}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "pms.settings",
            "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
            **values,
        }
    )
    return env


def _production(tmp_path: Path, **values: str) -> dict[str, str]:
    return _env(
        tmp_path,
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="pms.example.com",
        **values,
    )


def _probe(env: dict[str, str], *, host: str, headers: dict[str, str] | None = None) -> dict:
    env = {**env, "PROBE_HOST": host, "PROBE_HEADERS": json.dumps(headers or {})}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_security_deploy_check_is_clean_with_production_settings(tmp_path):
    """Issue 12 item 5: `manage.py check --deploy --fail-level WARNING` with DEBUG=false, a long
    random SECRET_KEY and ALLOWED_HOSTS set (nothing else) reports no issue: HSTS, the SSL redirect
    and secure session and CSRF cookies are on by default when DEBUG is off."""
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=_production(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_security_deploy_production_redirects_http_and_trusts_the_proxy_header_when_told(tmp_path):
    """Issue 12 item 5: with production settings an http request is redirected to https; behind a
    TLS-terminating proxy, SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO makes a forwarded https
    request secure (answered, with HSTS and a secure CSRF cookie); CSRF_TRUSTED_ORIGINS is read."""
    plain = _probe(_production(tmp_path), host="pms.example.com")
    assert plain["status"] == 301
    assert plain["location"] == "https://pms.example.com/admin/login/"
    # Without the switch a forwarded header is not believed (anyone could send it).
    spoofed = _probe(
        _production(tmp_path), host="pms.example.com", headers={"HTTP_X_FORWARDED_PROTO": "https"}
    )
    assert spoofed["status"] == 301

    behind_proxy = _production(
        tmp_path,
        SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO",
        CSRF_TRUSTED_ORIGINS="https://pms.example.com",
    )
    forwarded = _probe(behind_proxy, host="pms.example.com", headers={"HTTP_X_FORWARDED_PROTO": "https"})

    assert forwarded["status"] == 200
    assert forwarded["hsts"] == "max-age=31536000; includeSubDomains; preload"
    assert forwarded["csrf_cookie_secure"] is True
    assert forwarded["settings"]["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert forwarded["settings"]["CSRF_TRUSTED_ORIGINS"] == ["https://pms.example.com"]


def test_security_deploy_each_switch_is_overridable_from_the_environment(tmp_path):
    """Issue 12 item 5: every security switch can be set from the environment, either way: a
    DEBUG site can turn them on, and a production site served over plain http on a private
    network can turn the redirect, HSTS and secure cookies off."""
    switched_on = _env(
        tmp_path,
        DEBUG="true",
        SECURE_SSL_REDIRECT="true",
        SESSION_COOKIE_SECURE="true",
        CSRF_COOKIE_SECURE="true",
        SECURE_HSTS_SECONDS="60",
    )
    on = _probe(switched_on, host="127.0.0.1:8000")
    assert on["status"] == 301
    assert on["settings"]["SESSION_COOKIE_SECURE"] is True
    assert on["settings"]["CSRF_COOKIE_SECURE"] is True
    assert on["settings"]["SECURE_HSTS_SECONDS"] == 60

    env = _production(
        tmp_path,
        SECURE_SSL_REDIRECT="false",
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
        SECURE_HSTS_SECONDS="0",
    )

    probe = _probe(env, host="pms.example.com")

    assert probe["status"] == 200
    assert probe["settings"]["SECURE_SSL_REDIRECT"] is False
    assert probe["settings"]["SESSION_COOKIE_SECURE"] is False
    assert probe["settings"]["CSRF_COOKIE_SECURE"] is False
    assert probe["settings"]["SECURE_HSTS_SECONDS"] == 0
    assert probe["csrf_cookie_secure"] is False


def test_security_deploy_make_run_debug_env_still_serves_http(tmp_path):
    """Issue 12 item 5: `make run` reads the .env that scripts/bootstrap_env.py writes (DEBUG=true):
    http://127.0.0.1:8000 is answered, not redirected, and its cookies are not secure-only."""
    written = dict(
        line.split("=", 1) for line in render_env().splitlines() if line and not line.startswith("#")
    )
    assert written["DEBUG"] == "true"

    probe = _probe(_env(tmp_path, **written), host="127.0.0.1:8000")

    assert probe["status"] == 200
    assert probe["hsts"] == ""
    assert probe["csrf_cookie_secure"] is False
    assert probe["settings"]["DEBUG"] is True
    assert probe["settings"]["SECURE_SSL_REDIRECT"] is False
    assert probe["settings"]["SESSION_COOKIE_SECURE"] is False
