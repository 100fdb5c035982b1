from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Linked accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The sign-in lock-out counts failures through Django's `user_login_failed` signal: connect
        # its receiver whatever the entry point (web, API, admin, a command), not only via urls.
        from accounts import security  # noqa: F401
