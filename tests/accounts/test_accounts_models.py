"""Account invariants: one enabled master, encrypted credentials, wrong keys fail clearly."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.db import IntegrityError, connection, transaction

from accounts.crypto import CredentialDecryptError, SealedSecret
from accounts.models import Account, AccountStatus, CapitalMode
from tests.factories import AccountFactory, KiteAccountFactory, MasterAccountFactory

pytestmark = pytest.mark.django_db


def test_account_one_enabled_master_enforced_by_database():
    MasterAccountFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        MasterAccountFactory()


def test_account_disabled_master_does_not_count_towards_one_master():
    MasterAccountFactory(status=AccountStatus.DISABLED)
    MasterAccountFactory()
    assert Account.objects.filter(role="master").count() == 2


def test_account_fixed_mode_requires_fixed_capital():
    with pytest.raises(IntegrityError), transaction.atomic():
        AccountFactory(capital_mode=CapitalMode.FIXED, fixed_capital=None)


def test_account_multiplier_must_be_positive():
    with pytest.raises(IntegrityError), transaction.atomic():
        AccountFactory(multiplier=0)


def test_account_credentials_stored_without_plaintext():
    account = KiteAccountFactory(api_key="kitekey123", api_secret="s3cr3t-value", access_token="tok-abc-123")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT api_key, api_secret, access_token FROM accounts_account WHERE id = %s", [account.pk]
        )
        raw = cursor.fetchone()
    assert all(raw)
    joined = " ".join(raw)
    for plaintext in ("kitekey123", "s3cr3t-value", "tok-abc-123"):
        assert plaintext not in joined
    fresh = Account.objects.get(pk=account.pk)
    assert fresh.secret("access_token") == "tok-abc-123"


def test_account_wrong_key_raises_clear_error_and_never_returns_ciphertext(rotate_key):
    account = KiteAccountFactory(access_token="tok-abc-123")
    rotate_key([Fernet.generate_key().decode()])
    fresh = Account.objects.get(pk=account.pk)
    assert isinstance(fresh.access_token, SealedSecret)
    assert not fresh.credentials_readable
    with pytest.raises(CredentialDecryptError, match="cannot be decrypted"):
        fresh.secret("access_token")
    assert "gAAAA" not in str(fresh.access_token)


def test_account_save_with_wrong_key_keeps_ciphertext(rotate_key):
    old_key = Fernet.generate_key().decode()
    rotate_key([old_key])
    account = KiteAccountFactory(access_token="tok-abc-123")
    rotate_key([Fernet.generate_key().decode()])
    fresh = Account.objects.get(pk=account.pk)
    fresh.display_name = "renamed under the wrong key"
    fresh.save()
    rotate_key([old_key])
    assert Account.objects.get(pk=account.pk).secret("access_token") == "tok-abc-123"


def test_account_rotation_reads_old_key_and_writes_new(rotate_key):
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    rotate_key([old_key])
    account = KiteAccountFactory(access_token="tok-abc-123")
    rotate_key([new_key, old_key])
    fresh = Account.objects.get(pk=account.pk)
    assert fresh.secret("access_token") == "tok-abc-123"
    fresh.save()
    rotate_key([new_key])
    assert Account.objects.get(pk=account.pk).secret("access_token") == "tok-abc-123"
