"""scripts/bootstrap_env.py: a first-run .env with fresh secrets, never overwritten."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from pms.settings import parse_field_encryption_keys

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bootstrap_env.py"


def _run(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--path", str(path)], capture_output=True, text=True, timeout=60
    )


def _values(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_bootstrap_env_writes_private_file_with_usable_secrets(tmp_path):
    target = tmp_path / ".env"
    result = _run(target)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    values = _values(target)
    assert values["DEBUG"] == "true"
    assert len(values["SECRET_KEY"]) >= 50
    assert parse_field_encryption_keys(values["FIELD_ENCRYPTION_KEY"]) == [values["FIELD_ENCRYPTION_KEY"]]
    assert values["SECRET_KEY"] not in result.stdout
    assert values["FIELD_ENCRYPTION_KEY"] not in result.stdout


def test_bootstrap_env_never_overwrites_existing_file(tmp_path):
    target = tmp_path / ".env"
    target.write_text("FIELD_ENCRYPTION_KEY=the-only-key-that-decrypts\n")
    result = _run(target)
    assert result.returncode == 0, result.stderr
    assert "left unchanged" in result.stdout
    assert target.read_text() == "FIELD_ENCRYPTION_KEY=the-only-key-that-decrypts\n"


def test_bootstrap_env_fresh_secrets_each_time(tmp_path):
    _run(tmp_path / "a.env")
    _run(tmp_path / "b.env")
    first, second = _values(tmp_path / "a.env"), _values(tmp_path / "b.env")
    assert first["SECRET_KEY"] != second["SECRET_KEY"]
    assert first["FIELD_ENCRYPTION_KEY"] != second["FIELD_ENCRYPTION_KEY"]
