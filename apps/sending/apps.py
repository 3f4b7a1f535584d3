from django.apps import AppConfig


class SendingConfig(AppConfig):
    name = "apps.sending"
    label = "sending"
    verbose_name = "Send to PACS"

    def ready(self):
        # Inbox changes (who, when, which fields, old -> new) are recorded by django-auditlog; the folders
        # the watcher reports as unmatched are its own notes, not configuration.
        from django.db.models.signals import pre_delete

        from apps.audit import track_changes
        from apps.jobs.registry import register
        from apps.sending import work
        from apps.sending.models import Inbox, SendItem
        from apps.servers.models import DicomServer

        track_changes(Inbox, exclude_fields=["updated_at", "unmatched", "disabled_reason"],
                      m2m_fields={"destinations"})
        # Deleting a server removes it from every inbox's destinations without m2m signals: look first.
        pre_delete.connect(_server_deleted, sender=DicomServer, dispatch_uid="sending.inbox_destination_deleted")
        register(SendItem, work.send)


def _server_deleted(sender, instance, **kwargs):
    from auditlog.context import auditlog_value

    from apps.sending.models import Inbox

    try:
        actor = auditlog_value.get().get("actor")
    except LookupError:  # not inside a request or a set_actor block
        actor = None
    Inbox.destination_deleted(instance, actor)
