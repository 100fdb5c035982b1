"""The shape of the simulators' credentials, which production must recognise without the lab.

Every api key and access token issued for the Kite simulator (`manage.py kite_sim` of the lab,
`seed_demo --kite-sim`) starts with a mark; Kite's own are random letters and digits. The Kite
adapter sends a marked credential to a loopback root only, whatever KITE_API_ROOT says.
"""

from __future__ import annotations

import ipaddress
import secrets
from urllib.parse import urlsplit

SIMULATOR_MARK = "kitesim"
ANGEL_SIMULATOR_MARK = "angelsim"  # lab.angel_sim's api keys; the Angel adapter keeps them on loopback
DHAN_SIMULATOR_MARK = "dhansim"  # lab.dhan_sim's api keys and tokens; the Dhan adapter keeps them on loopback
ALICE_SIMULATOR_MARK = "alicesim"  # lab.alice_sim's app codes; the Alice Blue adapter keeps them on loopback
TOKEN_CHARS = 32  # Kite's access tokens are 32 letters and digits
API_KEY_CHARS = 16  # and its api keys 16


def simulator_credential(random_part: str) -> str:
    """A credential for the simulator: the mark, then `random_part` (letters and digits)."""
    return f"{SIMULATOR_MARK}{random_part}"


def new_simulator_credential(length: int = TOKEN_CHARS) -> str:
    """A random api key or access token of `length` characters carrying the simulator's mark, so
    the Kite adapter never sends it anywhere but to a simulator on this machine."""
    return simulator_credential(secrets.token_hex(length)[: length - len(SIMULATOR_MARK)])


def is_simulator_credential(value: str) -> bool:
    if value.startswith(DHAN_SIMULATOR_MARK):
        return True
    return value.startswith((SIMULATOR_MARK, ANGEL_SIMULATOR_MARK)) or value.startswith(ALICE_SIMULATOR_MARK)


def new_angel_simulator_key(length: int = 24) -> str:
    """An api key for the Angel simulator (`lab.angel_sim`), carrying its mark."""
    return ANGEL_SIMULATOR_MARK + secrets.token_hex(length)[: length - len(ANGEL_SIMULATOR_MARK)]


def new_alice_simulator_key(length: int = 24) -> str:
    """An app code for the Alice Blue simulator (`lab.alice_sim`), carrying its mark."""
    return ALICE_SIMULATOR_MARK + secrets.token_hex(length)[: length - len(ALICE_SIMULATOR_MARK)]


def new_dhan_simulator_credential(length: int = 32) -> str:
    """An api key or access token of the Dhan simulator (`lab.dhan_sim`), carrying its mark."""
    return DHAN_SIMULATOR_MARK + secrets.token_hex(length)[: length - len(DHAN_SIMULATOR_MARK)]


def is_loopback_url(url: str) -> bool:
    """Whether `url` names this machine (localhost, 127.0.0.0/8, ::1), where the simulator runs."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
