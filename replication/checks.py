"""System checks: refuse a django-q2 configuration that could replay or double-send orders."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register


@register()
def check_q_cluster(app_configs: Any, **kwargs: Any) -> list[Error]:
    conf: dict[str, Any] = settings.Q_CLUSTER
    errors: list[Error] = []
    if conf.get("catch_up", True):
        errors.append(
            Error(
                "Q_CLUSTER['catch_up'] must be False: missed schedules must not replay after downtime.",
                id="replication.E001",
            )
        )
    timeout, retry = conf.get("timeout"), conf.get("retry")
    if timeout is None or retry is None or timeout >= retry:
        errors.append(
            Error(
                "Q_CLUSTER['timeout'] must be set and shorter than Q_CLUSTER['retry'], or a slow task "
                "is handed to a second worker while the first still runs.",
                id="replication.E002",
            )
        )
    if conf.get("max_attempts", 0) != 1:
        errors.append(
            Error(
                "Q_CLUSTER['max_attempts'] must be 1: order-placing tasks are never retried "
                "automatically (an unknown outcome is looked up by tag instead).",
                id="replication.E003",
            )
        )
    return errors
