"""Production shape (issue 14 item 4): the web line of Procfile.prod starts the app under the pinned
WSGI server (gunicorn) with production settings; /healthz, /metrics and the static files answer,
and SIGTERM stops it cleanly. Loopback only."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from cryptography.fernet import Fernet

BASE_DIR = Path(__file__).resolve().parents[2]
TOKEN = "prometheus-scrape-token-for-tests"
# A developer's shell could carry these and change what is being tested.
CLEARED = ("DEBUG", "LAB_ENABLED", "SECURE_SSL_REDIRECT", "ALLOWED_HOSTS", "STATIC_ROOT", "WEB_BIND")
# No proxy from the environment for loopback requests.
# What the TLS-terminating proxy adds (SECURE_PROXY_SSL_HEADER): every page but /healthz is https-only.
HTTPS = {"X-Forwarded-Proto": "https"}
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _web_line() -> str:
    lines = (BASE_DIR / "Procfile.prod").read_text().splitlines()
    names = [line.partition(":")[0] for line in lines if line.strip()]
    assert names == ["web", "engine", "worker", "stream"]
    web = next(line.partition(":")[2].strip() for line in lines if line.startswith("web:"))
    assert "gunicorn pms.wsgi:application" in web
    return web


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310  (http://127.0.0.1 only)
    try:
        with OPENER.open(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _manage(env: dict[str, str], *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_prod_procfile_web_line_serves_under_gunicorn_and_stops_cleanly(tmp_path):
    """Issue 14 item 4: with production settings (DEBUG off, secrets from the environment, a SQLite
    database), after `migrate` and `collectstatic`, Procfile.prod's web line runs gunicorn on a free
    loopback port: /healthz answers 200 over plain http with a fresh engine lease, /metrics answers
    Prometheus with the bearer token, the page's hashed static file is served compressed and cached
    for ever by the web process, and SIGTERM ends gunicorn with exit 0."""
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if key not in CLEARED}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "pms.settings",
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(64),
            "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "ALLOWED_HOSTS": "127.0.0.1",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.sqlite3'}",
            "STATIC_ROOT": str(tmp_path / "static"),
            "METRICS_TOKEN": TOKEN,
            "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO",
            "WEB_BIND": f"127.0.0.1:{port}",
            "WEB_WORKERS": "1",
        }
    )
    _manage(env, "migrate", "--noinput")
    _manage(env, "collectstatic", "--noinput")
    _manage(
        env,
        "shell",
        "-c",
        "from datetime import timedelta; from replication.lease import lease_acquire; "
        "lease_acquire(holder='prod-test', ttl=timedelta(minutes=10))",
    )
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "gunicorn.log").open("w")
    web = subprocess.Popen(
        ["bash", "-c", f"exec {_web_line()}"], cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        health: tuple[int, dict[str, str], bytes] = (0, {}, b"")
        while time.monotonic() < deadline and web.poll() is None:
            try:
                health = _get(f"{base}/healthz")
                break
            except OSError:  # not listening yet
                time.sleep(0.2)
        assert web.poll() is None, (tmp_path / "gunicorn.log").read_text()

        status, _, body = health
        assert status == 200, body
        assert json.loads(body) == {
            "database": "ok",
            "engine_lease": "fresh",
            "static": "collected",
            "status": "ok",
        }

        status, headers, body = _get(f"{base}/metrics", {"Authorization": f"Bearer {TOKEN}", **HTTPS})
        assert status == 200, body
        assert 'pms_engine_lease_holder{epoch="1",holder="prod-test"} 1.0' in body.decode()
        assert _get(f"{base}/metrics", HTTPS)[0] == 401

        status, _, page = _get(f"{base}/login/", HTTPS)
        assert status == 200
        css = re.search(rb'href="(/static/dashboard/dashboard\.[0-9a-f]{12}\.css)"', page)
        assert css is not None, page[:2000]
        status, headers, body = _get(base + css.group(1).decode(), {"Accept-Encoding": "gzip", **HTTPS})
        assert status == 200
        assert headers["Content-Encoding"] == "gzip"
        assert "immutable" in headers["Cache-Control"]
    finally:
        web.send_signal(signal.SIGTERM)
        try:
            returncode = web.wait(timeout=30)
        finally:
            if web.poll() is None:
                web.kill()
            log.close()
    assert returncode == 0, (tmp_path / "gunicorn.log").read_text()
