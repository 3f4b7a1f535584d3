from django.apps import AppConfig


class ServersConfig(AppConfig):
    name = "apps.servers"
    label = "servers"
    verbose_name = "DICOM servers"

    def ready(self):
        from apps.audit import track_changes
        from apps.jobs.registry import register
        from apps.servers import work
        from apps.servers.models import DicomServer, EchoItem

        # Every DicomServer change is recorded by django-auditlog (who, when, which fields, old -> new). The
        # DICOMweb secret is masked so the trail never holds a usable password; who may use the server is
        # part of its configuration: group changes are recorded too.
        track_changes(DicomServer, exclude_fields=["updated_at"], mask_fields=["dicomweb_secret"],
                      m2m_fields={"query_groups", "retrieve_groups", "send_groups"})
        register(EchoItem, work.echo)

        # Work with a paused server, or outside its windows, waits (apps/servers/windows.py); a server
        # resumed or given other windows wakes what waited at once, not at the next minute's sweep.
        from django.db.models.signals import post_save

        from apps.jobs.registry import add_check
        from apps.servers import windows

        add_check(windows.hold)
        post_save.connect(wake_held_work, sender=DicomServer, dispatch_uid="servers-wake-held-work")


def wake_held_work(sender, instance, **kwargs):
    from django.db import transaction

    from apps.jobs import holds

    if not instance.paused:
        transaction.on_commit(holds.wake)
