"""Send jobs (a file, a folder or uploaded files to one or more servers) and watched inboxes, whose
ready folders become send jobs ("runs") that rewrite the patient, send, and archive.

A job's files are split into a few items (batches); each item sends its batch to every destination,
holding one association slot per destination, so a job opens at most as many associations to a
server as the server's limit allows. An item is idempotent: a re-run re-sends its batch (a PACS
keeps one copy per SOP instance) and skips destinations that already confirmed all of it."""
from __future__ import annotations

import logging
import math
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Count, F, Sum, Value
from django.db.models.functions import Concat
from django.utils import timezone

from apps.audit import record
from apps.dicom import paths
from apps.dicom.rewrite import DEFAULT_FOLDER_PATTERN
from apps.jobs.models import Job, JobItem, JobStatus
from apps.jobs.models.base import JOB_DONE
from apps.sending.patterns import PatternError, compile_pattern
from apps.sending.roots import OutsideRoots, confined
from apps.sending.settle import settle
from apps.servers.models import DicomServer, server_name_validator

log = logging.getLogger("apps.sending")
FOLDER_FIELDS = ("path", "archive_path", "error_path")
FOLDER_WORDS = {"path": "watched folder", "archive_path": "archive", "error_path": "error folder"}
FOLDER_OWNERSHIP = ("The watched folder, inside IMPORT_ROOTS, sharing nothing with another inbox's folders. An inbox's "
                    "folder belongs to whoever may manage inboxes: anything put in it is sent to the destinations "
                    "with the patient its name gives, and moved to the archive.")
FILES_PER_ITEM_MIN = 25  # below this, another parallel association costs more than it saves
HIDDEN = "(not shown: the job de-identifies for a research project)"
NOTHING_SENT = "Nothing was sent: none of the files is DICOM (see the report for each file's reason)."


class Inbox(models.Model):
    """A watched folder: each top-level folder named like `#<PatientID>-<PatientName>` is sent once
    nothing in it changed for `debounce_seconds`, then moved to `<archive_path>/<yyyymmdd_hhmmss>/`."""

    name = models.CharField(max_length=32, unique=True, validators=[server_name_validator])
    path = models.CharField(max_length=500, help_text=FOLDER_OWNERSHIP)
    pattern = models.CharField(max_length=200, default=DEFAULT_FOLDER_PATTERN,
                               help_text="Regular expression (RE2) for folder names with exactly two groups: group 1 = "
                                         "PatientID, group 2 = PatientName ('^' separates name components).")
    destinations = models.ManyToManyField(DicomServer, related_name="+",
                                          help_text="Every folder goes to all of them (e.g. primary and backup).")
    debounce_seconds = models.PositiveIntegerField(default=180, help_text="Quiet time before a folder is sent.")
    archive_path = models.CharField(max_length=500, help_text="Sent folders move here, under a timestamp folder.")
    error_path = models.CharField(max_length=500, blank=True,
                                  help_text="Optional: folders that failed move here (retry still works).")
    project = models.ForeignKey("projects.Project", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                                help_text="A research project: every folder's files are de-identified for it after "
                                          "the folder-name rewrite. Empty: sent identified.")
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=300, blank=True, editable=False,
                                       help_text="Why the portal disabled this inbox; cleared when it is enabled again.")
    unmatched = models.JSONField(default=list, blank=True, editable=False,
                                 help_text="Folders whose names do not match the pattern (reported once).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "inboxes"

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        if self.enabled and self.disabled_reason:  # enabled again by someone who read the reason
            self.disabled_reason = ""
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "disabled_reason"}
        super().save(*args, **kwargs)

    def clean(self):
        errors = {}
        try:
            compile_pattern(self.pattern)
        except PatternError as exc:
            errors["pattern"] = str(exc)
        resolved = {}
        for field in FOLDER_FIELDS:
            value = getattr(self, field)
            if field == "error_path" and not value:
                continue
            try:
                resolved[field] = confined(value, what=self._meta.get_field(field).verbose_name)
            except OutsideRoots as exc:
                errors[field] = str(exc)
        watched = resolved.get("path")
        for field in ("archive_path", "error_path"):
            target = resolved.get(field)
            if watched and target and (target == watched or target.is_relative_to(watched)):
                errors[field] = "Must not lie inside the watched folder (it would be watched too)."
        for field, problem in self.overlaps(resolved).items():
            errors.setdefault(field, problem)
        if errors:
            raise ValidationError(errors)

    def overlaps(self, resolved: dict[str, Path]) -> dict[str, str]:
        """Why each of this inbox's folders may not be used because of another inbox: a watched folder
        shares nothing with another inbox's folders (the same, inside, or containing one), and an
        archive or error folder lies in no other inbox's watched folder. Otherwise one inbox takes the
        folders meant for another, with its own pattern, destinations and archive."""
        problems = {}
        for other in Inbox.objects.exclude(pk=self.pk) if self.pk else Inbox.objects.all():
            for theirs_field in FOLDER_FIELDS:
                value = getattr(other, theirs_field)
                if not value:
                    continue
                try:
                    theirs = Path(value).resolve()
                except (OSError, RuntimeError):
                    continue
                for field, mine in resolved.items():
                    if field != "path" and theirs_field != "path":
                        continue  # two inboxes may archive into one folder
                    if field not in problems and paths.overlap(mine, theirs):
                        problems[field] = (f"Overlaps inbox {other.name}'s {FOLDER_WORDS[theirs_field]} ({theirs}): "
                                           "inbox folders may not be the same as, lie inside or contain another "
                                           "inbox's folder, archive or error folder.")
        return problems

    @classmethod
    def destination_deleted(cls, server, actor=None) -> None:
        """A DICOM server is being deleted: every enabled inbox for which it is the only destination is
        disabled, with the reason on the inbox, a warning in the log and an audit event for operators."""
        theirs = cls.objects.filter(destinations=server, enabled=True).values("pk")
        alone = cls.objects.filter(pk__in=theirs).annotate(count=Count("destinations")).filter(count=1)
        for inbox in alone:
            reason = (f"Disabled on {timezone.localtime():%Y-%m-%d %H:%M}: its only destination {server.name} was "
                      "deleted. Name another destination and enable it again.")
            cls.objects.filter(pk=inbox.pk).update(enabled=False, disabled_reason=reason)
            log.warning("inbox %s disabled: its only destination %s was deleted", inbox.name, server.name)
            record(actor, "inbox.disabled", inbox, reason=reason, server=server.name)


class SendJob(Job):
    class Method(models.TextChoices):
        C_STORE = "c-store", "C-STORE (DICOM)"
        STOW_RS = "stow-rs", "STOW-RS (DICOMweb)"

    source_path = models.CharField(max_length=500, help_text="The file or folder sent (resolved).")
    root = models.CharField(max_length=500, help_text="Files outside this folder are never read.")
    servers = models.ManyToManyField(DicomServer, related_name="+")
    method = models.CharField(max_length=8, choices=Method.choices, default=Method.C_STORE)
    uploaded = models.BooleanField(default=False, help_text="The files are the portal's copies of an upload.")
    project = models.ForeignKey("projects.Project", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                                help_text="The research project every file is de-identified for; empty: identified.")
    inbox = models.ForeignKey(Inbox, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    folder = models.CharField(max_length=255, blank=True, help_text="Inbox run: the folder's name.")
    patient_id = models.CharField("PatientID", max_length=64, blank=True, help_text="Inbox run: written into every file.")
    patient_name = models.CharField("PatientName", max_length=200, blank=True)
    pseudonym = models.CharField(max_length=64, blank=True,
                                 help_text="Inbox run with a project: the patient's pseudonym, shown in place of "
                                           "the folder's name.")
    fingerprint = models.CharField(max_length=40, blank=True, help_text="Inbox run: the folder's content when seen.")
    archive_path = models.CharField(max_length=500, blank=True, help_text="Where the folder was archived.")
    note = models.TextField(blank=True, help_text="Why archiving or moving the folder failed, if it did.")
    log = models.TextField(blank=True, help_text="Phase-by-phase log.")

    class Meta(Job.Meta):
        verbose_name = "send job"

    def __str__(self) -> str:
        return f"Inbox run #{self.pk}" if self.inbox_id else f"Send #{self.pk}"

    @property
    def is_inbox_run(self) -> bool:
        return bool(self.folder)

    # A project's job shows no original: an inbox folder's name is the patient's ID and name, and a path
    # someone sent may name the patient too. The API, the report and the job's log show these instead.
    @property
    def shown_folder(self) -> str:
        if self.project_id is None or not self.folder:
            return self.folder
        return self.pseudonym or HIDDEN

    @property
    def shown_source_path(self) -> str:
        return self.source_path if self.project_id is None else HIDDEN

    @property
    def shown_archive_path(self) -> str:
        if self.project_id is None or not self.archive_path:
            return self.archive_path
        return str(Path(self.archive_path).parent / self.shown_folder)

    def add_log(self, line: str) -> None:
        """Append one line; items running in parallel may append at once, so the database concatenates."""
        stamped = f"{timezone.now():%Y-%m-%d %H:%M:%S} {line}\n"
        type(self).objects.filter(pk=self.pk).update(log=Concat(F("log"), Value(stamped)))

    def add_items(self, relative_paths: list[str], skipped: list[list[str]] = ()) -> None:
        """Split the files into batches: as many as the tightest server limit allows, but not tiny ones.
        What the walk did not send (FIFOs, links out…) is listed on the first batch as skipped."""
        limit = min((s.max_associations for s in self.servers.all()), default=1)
        count = max(1, min(limit, math.ceil(len(relative_paths) / FILES_PER_ITEM_MIN)))
        size = max(1, math.ceil(len(relative_paths) / count))
        batches = [relative_paths[i:i + size] for i in range(0, len(relative_paths), size)] or [[]]
        if self.project_id:  # a project's report names no path: a path may name the patient
            skipped = [[f"entry {n + 1} not sent", reason.replace(name, "…").replace(self.source_path, "…")]
                       for n, (name, reason) in enumerate(skipped)]
        SendItem.objects.bulk_create(SendItem(job=self, batch=n, paths=b, files=len(b),
                                              result={"skipped": list(skipped)} if n == 0 and skipped else {})
                                     for n, b in enumerate(batches))

    def files_on_disk(self, relative_paths) -> list[Path]:
        source = Path(self.source_path)
        return [source / rel if rel else source for rel in relative_paths]

    def extra_progress(self) -> dict:
        keys = ("files", "sent", "warnings", "skipped", "not_stored")  # "failed" stays the count of failed items
        sums = self.items.aggregate(*(Sum(key) for key in (*keys, "bytes")))
        progress = {key: sums[f"{key}__sum"] or 0 for key in keys}
        progress["bytes"] = sums["bytes__sum"] or 0
        progress["megabytes"] = round(progress["bytes"] / 1e6, 1)
        return progress

    def derive_status(self, counts: dict[str, int]) -> str:
        """A job that ended without sending a single file (nothing in it was DICOM) failed: an inbox
        folder of that kind stays where it is for someone to look at."""
        status = super().derive_status(counts)
        if status == JobStatus.SUCCEEDED and not self.items.filter(sent__gt=0).exists():
            return JobStatus.FAILED
        return status

    def error_summary(self) -> str:
        errors = list(dict.fromkeys(e for e in self.items.exclude(error="").values_list("error", flat=True)))
        if self.status == JobStatus.FAILED and not errors and not self.items.filter(sent__gt=0).exists():
            errors = [NOTHING_SENT]
        return "; ".join(errors + ([self.note] if self.note else []))[:2000]

    def refresh_status(self) -> str:
        """Once an inbox run is over, its folder moves: to the archive when every instance was confirmed
        by every destination, to the error folder (if any) when it failed; uploaded copies are removed once
        all were stored. Idempotent."""
        status = super().refresh_status()
        if status in JOB_DONE and (self.is_inbox_run or self.uploaded):
            settle(self)
        return status


class SendItem(JobItem):
    instances_field = "sent"
    job = models.ForeignKey(SendJob, on_delete=models.CASCADE, related_name="items")
    batch = models.PositiveIntegerField()
    paths = models.JSONField(default=list, help_text="Files of this batch, relative to the job's source.")
    files = models.PositiveIntegerField(default=0)
    sent = models.PositiveIntegerField(default=0, help_text="Files every destination confirmed.")
    warnings = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0, help_text="Not DICOM, unreadable, or outside the root.")
    not_stored = models.PositiveIntegerField(default=0, help_text="File-destination pairs that were not stored.")
    bytes = models.BigIntegerField(default=0)

    class Meta(JobItem.Meta):
        ordering = ["job", "batch"]

    def __str__(self) -> str:
        return f"batch {self.batch}"

    def max_attempts(self) -> int:
        return 1 + min((s.retries for s in self.job.servers.all()), default=0)

    def servers(self) -> list:
        return list(self.job.servers.all())  # every batch goes to every destination

    def direction(self) -> str:
        return "send"
