from django.apps import AppConfig


class ApiTokensConfig(AppConfig):
    name = "accounts.api.tokens"
    label = "api_tokens"
    verbose_name = "API tokens"

    def ready(self) -> None:
        from accounts.api.tokens import receivers  # noqa: F401  (connects the password-change receiver)
