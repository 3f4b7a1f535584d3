from django.apps import AppConfig


class SendingConfig(AppConfig):
    name = "apps.sending"
    label = "sending"
    verbose_name = "Send to PACS"
