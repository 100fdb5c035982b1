"""Encrypted credential fields that fail loudly.

django-encrypted-model-fields returns the ciphertext itself when no configured key can decrypt a
value. For broker credentials that is dangerous (ciphertext would be sent to the broker as a
token), so these fields load an undecryptable value as a :class:`SealedSecret`. A sealed secret
keeps its ciphertext (saving the row again does not destroy it), prints as a placeholder, and
:func:`reveal` refuses to hand it out.
"""

from __future__ import annotations

from typing import Any

import cryptography.fernet
from encrypted_model_fields import fields as emf


class CredentialDecryptError(Exception):
    """A stored credential cannot be decrypted with any configured FIELD_ENCRYPTION_KEY."""


class SealedSecret:
    """A stored secret that none of the configured keys can decrypt."""

    __slots__ = ("ciphertext", "field_name")

    def __init__(self, ciphertext: str, field_name: str = "") -> None:
        self.ciphertext = ciphertext
        self.field_name = field_name

    def __repr__(self) -> str:
        return "<undecryptable secret>"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return True


def reveal(value: str | SealedSecret | None, *, field_name: str = "credential") -> str:
    """Return the plaintext of a credential, or raise when it cannot be decrypted."""
    if isinstance(value, SealedSecret):
        raise CredentialDecryptError(
            f"{field_name} cannot be decrypted with the configured FIELD_ENCRYPTION_KEY "
            "(wrong key, or the key that wrote it was removed from the rotation list). "
            "Restore the old key as a secondary key, or re-enter the credential."
        )
    return value or ""


def reload_crypter() -> None:
    """Rebuild the library's key ring from settings (after a key change, e.g. in tests)."""
    emf.CRYPTER = emf.get_crypter()


class GuardedEncryptedTextField(emf.EncryptedTextField):  # type: ignore[misc]  # untyped library base
    """An encrypted text field whose undecryptable values load as :class:`SealedSecret`."""

    def from_db_value(self, value: Any, *args: Any, **kwargs: Any) -> Any:
        if value is None or value == "":
            return value
        try:
            return emf.decrypt_str(value)
        except cryptography.fernet.InvalidToken:
            return SealedSecret(value, self.name)

    def to_python(self, value: Any) -> Any:
        if isinstance(value, SealedSecret):
            return value
        return super().to_python(value)

    def get_db_prep_save(self, value: Any, connection: Any) -> Any:
        if isinstance(value, SealedSecret):
            return value.ciphertext  # keep what we cannot read, never re-encrypt a placeholder
        if value is None or value == "":
            return value
        return emf.encrypt_str(str(value)).decode("utf-8")
