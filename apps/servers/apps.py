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
