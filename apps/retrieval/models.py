"""Retrieval jobs: one job per case list, one item per CSV row (the batch download tool's format)."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, models, transaction
from django.utils import timezone

from apps.jobs.errors import ItemFailed
from apps.jobs.models import ItemStatus, Job, JobItem, JobStatus
from apps.jobs.queue import later
from apps.retrieval.caselist import CaseList
from apps.servers.models import DicomServer


class RetrievalJob(Job):
    start_permission = "retrieval.start_retrieval"

    source_name = models.CharField(max_length=255, blank=True, help_text="Case-list file name, or how it came.")
    timeout = models.PositiveIntegerField(null=True, blank=True,
                                          help_text="Seconds per study download; empty = each server's own.")
    row_errors = models.JSONField(default=list, blank=True, help_text="Rows refused when the list was read.")
    output_dir = models.CharField(max_length=500, blank=True, editable=False,
                                  help_text="Set only by the CLI's --output-dir; empty = DOWNLOADS_DIR.")
    preparing = models.BooleanField(default=False, help_text="Its rows are still being created in the background.")
    case_list_text = models.TextField(blank=True, editable=False,
                                      help_text="The list while its rows are created; emptied afterwards.")
    default_server = models.CharField(max_length=32, blank=True, editable=False)
    project = models.ForeignKey("projects.Project", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                                help_text="The research project its instances are de-identified for; empty: identified.")

    class Mode(models.TextChoices):
        RETRIEVE = "retrieve", "retrieve"
        QUERY = "query", "query only"

    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.RETRIEVE,
                            help_text="'query': every row runs its C-FINDs and records what it found; nothing is moved.")
    query_job = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retrievals",
                                  help_text="The query job whose found studies this job retrieves.")

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "retrieval job"
        # Jobs are started, not typed in: "start retrieval" takes the place of Django's add permission.
        default_permissions = ("view", "change", "delete")
        permissions = [("start_retrieval", "Can start retrievals")]

    def __str__(self) -> str:
        return f"Retrieval #{self.pk} {self.source_name}".strip()

    @classmethod
    def from_case_list(cls, case_list: CaseList, *, user=None, source_name: str = "", timeout: int | None = None,
                       start: bool = True, text: str = "", default_server: str = "",
                       mode: str = "retrieve", query_job=None, project=None) -> "RetrievalJob":
        """The job of a parsed list. With `text` (the list as uploaded), only the job is created here and
        it shows "preparing": prepare(), in the background, creates its rows and starts them."""
        job = cls.objects.create(created_by=user, source_name=source_name[:255], timeout=timeout,
                                 description=f"{len(case_list.rows)} rows from {source_name or 'a case list'}",
                                 row_errors=row_errors(case_list), preparing=bool(text), case_list_text=text,
                                 default_server=default_server, mode=mode, query_job=query_job, project=project)
        if text:
            later("apps.retrieval.tasks.prepare_job", job.pk)
            return job
        job.create_items(case_list.rows)
        if start:
            job.start(user)
        return job

    def create_items(self, rows, *, status: str = ItemStatus.PENDING, error: str = "") -> None:
        servers = {s.name: s for s in DicomServer.objects.filter(name__in={r.server for r in rows})}  # the first
        RetrievalItem.objects.bulk_create([
            RetrievalItem(job=self, line=r.line, patient_id=r.patient_id, study_date=r.study_date,
                          modality=r.modality, dicom_server=servers[r.server],
                          study_instance_uid=r.study_instance_uid, max_studies=r.max_studies,
                          accession_number=r.accession_number, series_description=r.series_description,
                          series_modality=r.series_modality, series_instance_uid=r.series_instance_uid,
                          server_name=r.server_spec or r.server, server_list=list(r.servers),
                          status=status, error=error)
            for r in rows
        ], batch_size=1000)

    def parallelism(self) -> int:
        """Workers beyond the servers' association limits would only wait for a slot."""
        limits = DicomServer.objects.filter(pk__in=self.items.values("dicom_server")).values_list(
            "max_associations", flat=True)
        return max(1, min(super().parallelism(), sum(limits)))

    @property
    def shown_status(self) -> str:
        """The status a user reads: "preparing" while the rows are still being created."""
        return "preparing" if self.preparing else self.status

    def derive_status(self, counts: dict[str, int]) -> str:
        """Rows refused when the list was read are failures too: a list with bad rows never ends
        'succeeded', so nobody mistakes it for a complete download. A job whose rows are still being
        created is not over when the rows so far are."""
        if self.preparing:
            return JobStatus.RUNNING if self.started_at else JobStatus.PENDING
        status = super().derive_status(counts)
        if status == JobStatus.SUCCEEDED and (self.row_errors or self.items.exclude(flag="").exists()):
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


def row_errors(case_list: CaseList) -> list[dict]:
    return [{"line": e.line, "text": e.text, "message": e.message} for e in case_list.errors]


class RetrievalItem(JobItem):
    instances_field = "instances"
    job = models.ForeignKey(RetrievalJob, on_delete=models.CASCADE, related_name="items")
    line = models.PositiveIntegerField(help_text="Line number in the case list.")
    patient_id = models.CharField("PatientID", max_length=64, blank=True)
    study_date = models.CharField("StudyDate", max_length=17, blank=True, help_text="YYYYMMDD or a range.")
    modality = models.CharField(max_length=16, blank=True)
    dicom_server = models.ForeignKey(DicomServer, on_delete=models.PROTECT, related_name="+")
    server_name = models.CharField("Server", max_length=200, help_text="As the row names it: one server, 'A|B' or '*'.")
    server_list = models.JSONField(default=list, blank=True,
                               help_text="A row searched on several servers: their names in order (the first is "
                                         "dicom_server); empty: dicom_server alone.")
    study_instance_uid = models.CharField("StudyInstanceUID", max_length=64, blank=True)
    expected = models.PositiveIntegerField(null=True, blank=True, help_text="Instances the PACS holds.")
    instances = models.PositiveIntegerField(default=0, help_text="Instances received and filed.")
    bytes = models.BigIntegerField(default=0)
    path = models.CharField(max_length=500, blank=True, help_text="Folder under DOWNLOADS_DIR.")
    accession_number = models.CharField("AccessionNumber", max_length=16, blank=True)
    max_studies = models.PositiveIntegerField("MaxStudies", null=True, blank=True,
                                              help_text="A query finding more studies than this flags the row.")
    flag = models.CharField(max_length=200, blank=True,
                            help_text="Why a query row needs a look: it found nothing, or too much.")
    series_description = models.CharField("SeriesDescription", max_length=65, blank=True,
                                          help_text="Series chosen by description: exact, or '~text' (contains).")
    series_modality = models.CharField("SeriesModality", max_length=17, blank=True)
    series_instance_uid = models.CharField("SeriesInstanceUID", max_length=64, blank=True)

    class Meta(JobItem.Meta):  # inherits the lease index every sweep queries
        ordering = ["job", "line"]

    def __str__(self) -> str:
        return f"line {self.line}"

    def describe(self) -> str:
        """The row in words for messages; identifiers are the user's own input, shown back to them."""
        if self.study_instance_uid:
            return f"StudyInstanceUID {self.study_instance_uid}" + self.describe_series()
        if self.accession_number:
            return f"AccessionNumber {self.accession_number}" + (f", PatientID {self.patient_id}"
                                                                 if self.patient_id else "") + self.describe_series()
        return (f"PatientID {self.patient_id}, {self.study_date or 'any date'}, {self.modality or 'any modality'}"
                + self.describe_series())

    def chooses_series(self) -> bool:
        return bool(self.series_description or self.series_modality or self.series_instance_uid)

    def describe_series(self) -> str:
        chosen = [f"{name} '{value}'" for name, value in (
            ("SeriesDescription", self.series_description), ("SeriesModality", self.series_modality),
            ("SeriesInstanceUID", self.series_instance_uid)) if value]
        return f", series with {' and '.join(chosen)}" if chosen else ""

    def server_names(self) -> list[str]:
        """The servers the row is searched on, in order."""
        return list(self.server_list) or [self.dicom_server.name]

    def servers(self) -> list[DicomServer]:
        """Every server of the row: a pause or a closed window of any holds it back."""
        if not self.server_list:
            return [self.dicom_server]
        by_name = {s.name: s for s in DicomServer.objects.filter(name__in=self.server_list)}
        return [by_name[name] for name in self.server_list if name in by_name]

    def server(self) -> DicomServer:
        return self.dicom_server

    def direction(self) -> str:
        return "retrieve"

    def writes_to(self) -> tuple[str, ...]:
        """A retrieval stages what arrives and files it under the downloads; a query job only looks."""
        return () if self.job.mode == RetrievalJob.Mode.QUERY else ("staging", "downloads")

    def max_attempts(self) -> int:
        return 1 + self.dicom_server.retries


class FoundStudy(models.Model):
    """One study a query job's row found on its server (the C-FIND's answer, checked against the row)."""

    item = models.ForeignKey(RetrievalItem, on_delete=models.CASCADE, related_name="found")
    line = models.PositiveIntegerField()
    server_name = models.CharField("Server", max_length=32)
    study_instance_uid = models.CharField("StudyInstanceUID", max_length=64)
    study_date = models.CharField("StudyDate", max_length=8, blank=True)
    study_time = models.CharField("StudyTime", max_length=16, blank=True)
    modalities = models.CharField("ModalitiesInStudy", max_length=100, blank=True)
    description = models.CharField("StudyDescription", max_length=64, blank=True)
    accession_number = models.CharField("AccessionNumber", max_length=16, blank=True)
    series = models.PositiveIntegerField("NumberOfStudyRelatedSeries", null=True, blank=True)
    instances = models.PositiveIntegerField("NumberOfStudyRelatedInstances", null=True, blank=True)
    found_on = models.CharField("FoundOn", max_length=200, blank=True,
                                help_text="Every server the row found the study on, in the row's order ('A|B').")
    chosen_series = models.PositiveIntegerField("ChosenSeries", null=True, blank=True,
                                                help_text="A row choosing series: how many of the study's it chose.")
    chosen_instances = models.PositiveIntegerField("ChosenInstances", null=True, blank=True)

    class Meta:
        ordering = ["item", "line", "study_date", "study_time", "study_instance_uid"]
        verbose_name = "found study"
        constraints = [models.UniqueConstraint(fields=["item", "study_instance_uid"], name="found_study_once_per_row")]

    def __str__(self) -> str:
        return f"line {self.line}: {self.study_instance_uid}"


class MoveKey(models.Model):
    """The Move Originator Message ID of one C-MOVE in flight. Drawn at random per move (never derived from
    a job or item number, so a peer cannot guess it) and unique among the moves in flight (the database
    holds it), so two moves never share a staging folder. The receiver keeps only instances that carry a
    live key and come from the PACS the move was sent to."""

    message_id = models.PositiveIntegerField(unique=True)
    item = models.ForeignKey(RetrievalItem, on_delete=models.CASCADE, related_name="+")
    pacs_ae_title = models.CharField(max_length=16, help_text="The AE title the C-STOREs must come from.")
    study_instance_uid = models.CharField(max_length=64)
    series_instance_uid = models.CharField(max_length=64, blank=True,
                                           help_text="When the move is of one series: only its instances are kept.")
    patient_id = models.CharField(max_length=64, blank=True,
                                  help_text="The PatientID the C-FIND answered: only instances naming it are filed.")
    server = models.ForeignKey(DicomServer, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
                               help_text="The server moving (a row searched on several); empty: the row's own.")
    expires_at = models.DateTimeField(db_index=True)

    MAX_DRAWS = 64

    def __str__(self) -> str:
        return f"move key {self.message_id}"

    @classmethod
    def allocate(cls, item: RetrievalItem, pacs_ae_title: str, study_instance_uid: str, *, seconds: float,
                 series: str = "", patient_id: str = "", server: DicomServer | None = None) -> "MoveKey":
        now = timezone.now()  # keys of moves that died with their worker go with their folders (retrieve.py)
        for _ in range(cls.MAX_DRAWS):
            try:
                with transaction.atomic():
                    return cls.objects.create(message_id=secrets.randbelow(65535) + 1, item=item,
                                              pacs_ae_title=pacs_ae_title, study_instance_uid=study_instance_uid,
                                              series_instance_uid=series, patient_id=patient_id[:64],
                                              server=server,
                                              expires_at=now + timedelta(seconds=seconds))
            except IntegrityError:
                continue  # drawn by a move in flight: draw again
        raise ItemFailed(f"No free C-MOVE key after {cls.MAX_DRAWS} draws: too many retrievals in flight.")

    @classmethod
    def live(cls, message_id: int) -> "LiveMove | None":
        """What the receiver checks an instance under a live key against; None for no such move."""
        found = cls.objects.filter(message_id=message_id, expires_at__gt=timezone.now()).select_related(
            "item__dicom_server", "item__job", "server").first()
        if found is None:
            return None
        server = found.server or found.item.dicom_server
        sources = server.store_sources() if server is not None and server.ae_title == found.pacs_ae_title else [
            (found.pacs_ae_title, "")]
        return LiveMove(found.study_instance_uid, found.series_instance_uid, found.patient_id, tuple(sources),
                        found.item.job.project_id)


@dataclass(frozen=True)
class LiveMove:
    """A C-MOVE in flight, as the receiver sees it: what it moves, the PatientID its C-FIND answered, and the
    (AE title, host) pairs its C-STOREs may come from (the server's own, then its store_from nodes)."""

    study: str
    series: str
    patient_id: str
    sources: tuple[tuple[str, str], ...]
    project_id: int | None = None  # a research project's move: staged de-identified (deid_form.py)
