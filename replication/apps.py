from django.apps import AppConfig


class ReplicationConfig(AppConfig):
    name = "replication"
    verbose_name = "Replication"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from replication import checks  # noqa: F401  (registers the django-q2 configuration check)
