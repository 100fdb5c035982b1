"""Issue, list and revoke API tokens: knox `AuthToken` rows, which hold a digest, never a secret."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.utils import timezone
from knox.models import AuthToken  # type: ignore[import-untyped]

# Characters of a token shown when listing it: enough to tell one's tokens apart, far too few to
# guess the other 56 hex characters (224 bits) of the secret.
PREFIX_LENGTH = 8


def token_ttl() -> timedelta:
    """How long a new token lives (`API_TOKEN_TTL_HOURS`)."""
    return timedelta(hours=settings.API_TOKEN_TTL_HOURS)


def token_issue(*, user: AbstractBaseUser) -> tuple[Any, str]:
    """A new token for `user`: its row (digest, expiry) and its secret, which exists only here.

    The user's expired tokens are deleted on the way.
    """
    AuthToken.objects.filter(user=user, expiry__lte=timezone.now()).delete()
    token, secret = AuthToken.objects.create(user=user, expiry=token_ttl())
    return token, str(secret)


def token_list_live(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Any]:
    """The user's tokens that have not expired, newest first (nobody else's, staff included)."""
    if user.pk is None:
        return AuthToken.objects.none()  # type: ignore[no-any-return]
    tokens = AuthToken.objects.filter(user_id=user.pk, expiry__gt=timezone.now())
    return tokens.order_by("-created", "digest")  # type: ignore[no-any-return]


def token_revoke(*, user: AbstractBaseUser | AnonymousUser, token_id: str) -> bool:
    """End the user's token `token_id` (its digest); False when the user has no such token."""
    if user.pk is None:
        return False
    deleted, _ = AuthToken.objects.filter(user_id=user.pk, digest=token_id).delete()
    return bool(deleted)


def tokens_end_all(*, user: AbstractBaseUser) -> int:
    """End every token of the user (a password change); how many there were."""
    deleted, _ = AuthToken.objects.filter(user_id=user.pk).delete()
    return int(deleted)


def token_prefix(token: Any) -> str:
    """The first characters of the token's secret (knox keeps 15 to find the row; 8 are shown)."""
    return str(token.token_key)[:PREFIX_LENGTH]
