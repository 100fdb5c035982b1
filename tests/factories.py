"""factory-boy factories for the project's models."""

from __future__ import annotations

from decimal import Decimal

import factory
from django.contrib.auth import get_user_model

from accounts.models import Account, AccountStatus, Broker, CapitalMode, Role


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.django.Password("pass-for-tests-only")


class StaffFactory(UserFactory):
    is_staff = True


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Account

    broker = Broker.PAPER
    broker_user_id = factory.Sequence(lambda n: f"PA{n:04d}")
    display_name = factory.Sequence(lambda n: f"Client {n}")
    role = Role.CHILD
    status = AccountStatus.ACTIVE
    capital_mode = CapitalMode.TOTAL
    multiplier = Decimal("1")
    consent_given_at = factory.Faker("date_time_this_year", tzinfo=__import__("datetime").UTC)
    consent_version = "v1"


class MasterAccountFactory(AccountFactory):
    role = Role.MASTER
    display_name = "Master"


class KiteAccountFactory(AccountFactory):
    broker = Broker.KITE
    broker_user_id = factory.Sequence(lambda n: f"ZK{n:04d}")
    api_key = factory.Sequence(lambda n: f"apikey{n:010d}")
    api_secret = factory.Sequence(lambda n: f"apisecret{n:022d}")
    access_token = factory.Sequence(lambda n: f"accesstoken{n:021d}")
