from django.apps import AppConfig


class SendingConfig(AppConfig):
    name = "apps.sending"
    label = "sending"
    verbose_name = "Send to PACS"

    def ready(self):
        # Inbox changes (who, when, which fields, old -> new) are recorded by django-auditlog; the folders
        # the watcher reports as unmatched are its own notes, not configuration.
        from auditlog.registry import auditlog

        from apps.sending.models import Inbox

        if not auditlog.contains(Inbox):
            auditlog.register(Inbox, exclude_fields=["updated_at", "unmatched"], m2m_fields={"destinations"})

        from apps.jobs.registry import register
        from apps.sending import work
        from apps.sending.models import SendItem

        register(SendItem, work.send)
