"""EchoJob: C-ECHO every configured server, one item per server. The smallest real job, used to
check the PACS connections and to exercise the runner end to end."""
from django.db import models

from apps.jobs.errors import ItemFailed
from apps.jobs.models.base import Job, JobItem


class EchoJob(Job):
    class Meta(Job.Meta):
        verbose_name = "echo job"

    @classmethod
    def for_servers(cls, servers, *, user=None, description: str = "Echo every server") -> "EchoJob":
        job = cls.objects.create(created_by=user, description=description)
        EchoItem.objects.bulk_create(EchoItem(job=job, dicom_server=s, server_name=s.name) for s in servers)
        return job


class EchoItem(JobItem):
    job = models.ForeignKey(EchoJob, on_delete=models.CASCADE, related_name="items")
    dicom_server = models.ForeignKey("servers.DicomServer", null=True, on_delete=models.SET_NULL, related_name="+")
    server_name = models.CharField(max_length=32, help_text="Kept so the item still reads well if the server goes.")

    class Meta(JobItem.Meta):
        verbose_name = "echo item"

    def server(self):
        return self.dicom_server

    def process(self, ctx) -> None:
        from apps.dicom import dimse
        from apps.servers.models import local_ae

        server = self.dicom_server
        if server is None:
            raise ItemFailed(f"Server {self.server_name} was deleted.")
        with ctx.association_slot(server):
            elapsed_ms = dimse.echo(server.as_peer(), local_ae())
        self.result["elapsed_ms"] = round(elapsed_ms, 1)
