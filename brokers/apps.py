from django.apps import AppConfig


class BrokersConfig(AppConfig):
    name = "brokers"
    verbose_name = "Brokers and paper exchange"
    default_auto_field = "django.db.models.BigAutoField"
