#!/usr/bin/env python3
"""Write a development `.env` on first run: random SECRET_KEY, a fresh Fernet key, DEBUG=true.

An existing file is never touched (it may hold the only key that decrypts stored credentials).
The file is created with mode 0600. Standard library plus `cryptography` only.

    python scripts/bootstrap_env.py [--path PATH]
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

from cryptography.fernet import Fernet

DEFAULT_PATH = Path(__file__).resolve().parent.parent / ".env"


def render_env() -> str:
    """The text of a fresh development `.env`."""
    return (
        "# Written once by scripts/bootstrap_env.py for local development; see .env.example.\n"
        "# Keep this file: FIELD_ENCRYPTION_KEY is the only key that decrypts credentials saved with it.\n"
        f"SECRET_KEY={secrets.token_urlsafe(50)}\n"
        f"FIELD_ENCRYPTION_KEY={Fernet.generate_key().decode('ascii')}\n"
        "DEBUG=true\n"
    )


def write_env(path: Path) -> bool:
    """Create `path` with fresh secrets (mode 0600). Return False, changing nothing, if it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(render_env())
    os.chmod(path, 0o600)  # the umask may have narrowed it further; never wider
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH, help="where to write (default: ./.env)")
    args = parser.parse_args(argv)
    path: Path = args.path
    if write_env(path):
        sys.stdout.write(f"Wrote {path} (mode 0600) with a new SECRET_KEY and FIELD_ENCRYPTION_KEY.\n")
    else:
        sys.stdout.write(f"{path} exists; left unchanged.\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
