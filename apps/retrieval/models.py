"""Retrieval jobs: one job per case list, one item per CSV row (the batch download tool's format)."""
from __future__ import annotations

from django.db import models

from apps.jobs.models import Job, JobItem, JobStatus
from apps.retrieval.caselist import CaseList
from apps.servers.models import DicomServer


class RetrievalJob(Job):
    source_name = models.CharField(max_length=255, blank=True, help_text="Case-list file name, or how it came.")
    timeout = models.PositiveIntegerField(null=True, blank=True,
                                          help_text="Seconds per study download; empty = each server's own.")
    row_errors = models.JSONField(default=list, blank=True, help_text="Rows refused when the list was read.")
    output_dir = models.CharField(max_length=500, blank=True, editable=False,
                                  help_text="Set only by the CLI's --output-dir; empty = DOWNLOADS_DIR.")

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "retrieval job"

    def __str__(self) -> str:
        return f"Retrieval #{self.pk} {self.source_name}".strip()

    @classmethod
    def from_case_list(cls, case_list: CaseList, *, user=None, source_name: str = "", timeout: int | None = None,
                       start: bool = True) -> "RetrievalJob":
        servers = {s.name: s for s in DicomServer.objects.filter(name__in={r.server for r in case_list.rows})}
        job = cls.objects.create(created_by=user, source_name=source_name[:255], timeout=timeout,
                                 description=f"{len(case_list.rows)} rows from {source_name or 'a case list'}",
                                 row_errors=[{"line": e.line, "text": e.text, "message": e.message}
                                             for e in case_list.errors])
        RetrievalItem.objects.bulk_create([
            RetrievalItem(job=job, line=r.line, patient_id=r.patient_id, study_date=r.study_date,
                          modality=r.modality, dicom_server=servers[r.server], server_name=r.server,
                          study_instance_uid=r.study_instance_uid)
            for r in case_list.rows
        ])
        if start:
            job.start(user)
        return job

    def derive_status(self, counts: dict[str, int]) -> str:
        """Rows refused when the list was read are failures too: a list with bad rows never ends
        'succeeded', so nobody mistakes it for a complete download."""
        status = super().derive_status(counts)
        if status == JobStatus.SUCCEEDED and self.row_errors:
            return JobStatus.PARTIAL
        return status

    def downloads_root(self):
        from pathlib import Path

        from django.conf import settings

        return Path(self.output_dir) if self.output_dir else Path(settings.DOWNLOADS_DIR)

    def extra_progress(self) -> dict:
        sums = self.items.aggregate(instances=models.Sum("instances"), bytes=models.Sum("bytes"),
                                    expected=models.Sum("expected"))
        return {"instances": sums["instances"] or 0, "expected_instances": sums["expected"] or 0,
                "megabytes": round((sums["bytes"] or 0) / 1e6, 1), "bad_rows": len(self.row_errors)}


class RetrievalItem(JobItem):
    job = models.ForeignKey(RetrievalJob, on_delete=models.CASCADE, related_name="items")
    line = models.PositiveIntegerField(help_text="Line number in the case list.")
    patient_id = models.CharField("PatientID", max_length=64, blank=True)
    study_date = models.CharField("StudyDate", max_length=17, blank=True, help_text="YYYYMMDD or a range.")
    modality = models.CharField(max_length=16, blank=True)
    dicom_server = models.ForeignKey(DicomServer, on_delete=models.PROTECT, related_name="+")
    server_name = models.CharField("Server", max_length=32)
    study_instance_uid = models.CharField("StudyInstanceUID", max_length=64, blank=True)
    expected = models.PositiveIntegerField(null=True, blank=True, help_text="Instances the PACS holds.")
    instances = models.PositiveIntegerField(default=0, help_text="Instances received and filed.")
    bytes = models.BigIntegerField(default=0)
    path = models.CharField(max_length=500, blank=True, help_text="Folder under DOWNLOADS_DIR.")

    class Meta:
        ordering = ["job", "line"]

    def __str__(self) -> str:
        return f"line {self.line}"

    def describe(self) -> str:
        """The row in words for messages; identifiers are the user's own input, shown back to them."""
        if self.study_instance_uid:
            return f"StudyInstanceUID {self.study_instance_uid}"
        return f"PatientID {self.patient_id}, {self.study_date or 'any date'}, {self.modality or 'any modality'}"

    def server(self) -> DicomServer:
        return self.dicom_server

    def max_attempts(self) -> int:
        return 1 + self.dicom_server.retries

    def process(self, ctx) -> None:
        from apps.retrieval.retrieve import retrieve_row

        retrieve_row(self, ctx)
