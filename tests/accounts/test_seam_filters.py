"""Issue 15: allowed/blocked instrument filters take an underlying (`NIFTY`, `NFO:NIFTY`: every
future and option on it, whatever the week's symbols) as well as one contract."""

from __future__ import annotations

import pytest

from accounts.models import Account
from tests.api_helpers import API
from tests.factories import KiteAccountFactory

pytestmark = pytest.mark.django_db


def test_seam_filters_api_takes_an_underlying_with_or_without_its_exchange(people):
    account = KiteAccountFactory(owner=people.alice)

    response = people.as_staff.patch(
        f"{API}/accounts/{account.pk}",
        {
            "allowed_instruments": ["nifty", "NFO:NIFTY", "NFO:NIFTY25DECFUT"],
            "blocked_instruments": ["BANKNIFTY"],
        },
        format="json",
    )

    assert response.status_code == 200, response.json()
    account = Account.objects.get(pk=account.pk)
    assert account.allowed_instruments == ["NIFTY", "NFO:NIFTY", "NFO:NIFTY25DECFUT"]
    assert account.blocked_instruments == ["BANKNIFTY"]


@pytest.mark.parametrize("entry", ["NFO:", ":NIFTY", "NIFTY 50", "NFO:NIFTY:FUT", ""])
def test_seam_filters_api_still_refuses_what_names_nothing(people, entry):
    account = KiteAccountFactory(owner=people.alice)

    response = people.as_staff.patch(
        f"{API}/accounts/{account.pk}", {"blocked_instruments": [entry]}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_instruments"
    assert Account.objects.get(pk=account.pk).blocked_instruments == []
