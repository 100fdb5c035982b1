"""A password change ends the user's API tokens, whatever path changed it.

Every path Django has (the admin's password page, `changepassword`, the password reset and change
forms, `set_password()` + `save()`) ends in a save of the user row with a new password hash: the
`pre_save` receiver compares it with the stored one and the `post_save` receiver deletes the
user's tokens, inside the same save. A rehash of an unchanged password (Django's hasher upgrade on
login) also counts as a change: those tokens end too, which errs on the safe side.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from accounts.api.tokens.services import tokens_end_all

logger = logging.getLogger(__name__)

_PASSWORD_CHANGED = "_api_tokens_password_changed"  # noqa: S105 (an attribute name)


@receiver(pre_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="api_tokens_password_check")
def note_password_change(
    sender: type[AbstractBaseUser],
    instance: AbstractBaseUser,
    raw: bool = False,
    update_fields: frozenset[str] | None = None,
    **kwargs: Any,
) -> None:
    if raw or instance.pk is None:
        return
    if update_fields is not None and "password" not in update_fields:
        return
    stored = sender._default_manager.filter(pk=instance.pk).values_list("password", flat=True).first()
    setattr(instance, _PASSWORD_CHANGED, stored is not None and stored != instance.password)


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="api_tokens_password_changed")
def end_tokens_on_password_change(
    sender: type[AbstractBaseUser], instance: AbstractBaseUser, raw: bool = False, **kwargs: Any
) -> None:
    if raw or not getattr(instance, _PASSWORD_CHANGED, False):
        return
    setattr(instance, _PASSWORD_CHANGED, False)
    ended = tokens_end_all(user=instance)
    if ended:
        logger.info("password changed: ended %d API token(s) of user %s", ended, instance.pk)
