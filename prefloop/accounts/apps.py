from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "prefloop.accounts"
    label = "prefloop_accounts"
    verbose_name = "prefloop accounts"
