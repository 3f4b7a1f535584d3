"""One case-list row, end to end: C-FIND the studies it names, C-MOVE (to our receiver) or C-GET each,
reconcile what arrived with what the PACS said it holds, and file it into the download layout.

A row is idempotent: staging is cleared before each move and filing replaces same-named files, so a
row re-run after a crash or a retry finishes without duplicates. A shortfall is a failure with numbers,
never a silent success.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from apps.audit import record

from apps.dicom import dimse
from apps.dicom.errors import DicomTimeout
from apps.dicom.query import study_query
from apps.dicom.engines import C_GETS
from apps.dicom.staging import MoveStaging
from apps.jobs.errors import ItemCanceled, ItemFailed, ItemTimedOut
from apps.retrieval.layout import file_into, study_folder
from apps.servers.models import DicomServer, local_ae

if TYPE_CHECKING:
    from apps.jobs.context import ItemContext
    from apps.retrieval.models import RetrievalItem

# How long the receiver may trail the final C-MOVE response before a shortfall counts (a PACS sends
# the last C-STORE before its final response, but our receiver is another process writing to disk).
RECEIVER_GRACE_SECONDS = 2.0


@dataclass
class StudyOutcome:
    study_instance_uid: str
    folder: Path
    expected: int | None
    received: int
    bytes: int
    failed_on_pacs: int = 0


@dataclass
class RowOutcome:
    studies: list[StudyOutcome] = field(default_factory=list)

    @property
    def expected(self) -> int:
        return sum(s.expected or 0 for s in self.studies)

    @property
    def received(self) -> int:
        return sum(s.received for s in self.studies)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.studies)


def row_query(item) -> dict[str, str]:
    """The row's C-FIND identifier: the same builder as the query API, from the row's checked values."""
    return study_query({"PatientID": item.patient_id, "StudyDate": item.study_date, "Modality": item.modality,
                        "StudyInstanceUID": item.study_instance_uid})


def _expected_count(assoc, study) -> int | None:
    """NumberOfStudyRelatedInstances when the PACS gives it; else count at IMAGE level."""
    value = str(study.get("NumberOfStudyRelatedInstances", "") or "").strip()
    if value.isdigit():
        return int(value)
    images = assoc.find("IMAGE", {"StudyInstanceUID": study.StudyInstanceUID, "SOPInstanceUID": ""})
    return len(images)


def _modality_label(item, study) -> str:
    if item.modality:
        return item.modality
    found = study.get("ModalitiesInStudy", "")
    values = [found] if isinstance(found, str) else list(found)
    return "-".join(sorted({m for m in values if m})) or "ALL"


@dataclass
class RowRetrieval:
    """What fetching one row's studies needs: the row, its worker context, where instances are staged
    and filed, and what has arrived so far."""

    item: RetrievalItem
    ctx: ItemContext
    staging: MoveStaging
    folder: Path  # this row's staging folder
    downloads: Path
    outcome: RowOutcome = field(default_factory=RowOutcome)

    def fetch(self, study, expected: int | None, retrieve, *, wait_for_receiver: bool) -> None:
        """Retrieve one study (`retrieve`: a C-MOVE to our receiver, or a C-GET) into an emptied staging
        folder, then file what arrived into the layout."""
        item = self.item
        if self.ctx.should_stop():
            raise ItemCanceled()
        shutil.rmtree(self.folder, ignore_errors=True)  # a re-run starts from an empty staging folder
        try:
            result = retrieve({"StudyInstanceUID": study.StudyInstanceUID})
        except DicomTimeout as exc:
            raise ItemTimedOut(f"{exc} Raise the timeout (job or server) for large studies.") from exc
        staged = _wait_for_staged(self.staging, self.folder, expected if wait_for_receiver else None)
        target = study_folder(self.downloads, item.dicom_server.name, str(study.get("StudyDate", "") or ""),
                              str(study.get("PatientID", item.patient_id) or item.patient_id),
                              _modality_label(item, study))
        size = file_into(target, staged)
        self.outcome.studies.append(StudyOutcome(study.StudyInstanceUID, target, expected, len(staged), size,
                                                 failed_on_pacs=result.failed))
        self.ctx.heartbeat(instances=self.outcome.received, bytes=self.outcome.bytes)


def fetch_row(item, ctx, *, downloads: Path | None = None, staging_root: Path | None = None) -> RowOutcome:
    """C-FIND the row's studies, then retrieve and file each; the outcome says what arrived where."""
    server: DicomServer = item.dicom_server
    peer = server.as_peer(retrieve_timeout=item.job.timeout)
    local = local_ae()
    staging = MoveStaging(staging_root or settings.STAGING_DIR)
    # Message IDs are 16-bit; the item id keeps concurrent moves of this AE apart.
    message_id = item.pk % 65535 + 1
    row = RowRetrieval(item, ctx, staging, staging.folder(local.ae_title, message_id),
                       Path(downloads or item.job.downloads_root()))
    c_move = server.retrieve_method != DicomServer.RetrieveMethod.C_GET
    # One association at a time, so the server's association limit holds: the C-FINDs (and C-MOVEs)
    # share one; a C-GET runs on its own (the CGET_ENGINE, by default the socket-level SCU) after it closed.
    with ctx.association_slot(server):
        with dimse.associate(peer, local, purpose="query") as assoc:
            studies = assoc.find("STUDY", row_query(item))
            if not studies:
                raise ItemFailed(f"No study on {server.name} matches line {item.line} ({item.describe()}).")
            plans = [(study, _expected_count(assoc, study)) for study in studies]
            if c_move:
                for study, expected in plans:
                    row.fetch(study, expected, lambda query: assoc.move(query, local.ae_title, message_id=message_id),
                              wait_for_receiver=True)
        if not c_move:
            c_get = C_GETS[settings.CGET_ENGINE]
            for study, expected in plans:
                row.fetch(study, expected, lambda query: c_get(peer, local, query, _stage_into(staging, row.folder),
                                                               message_id=message_id), wait_for_receiver=False)
    return row.outcome


def retrieve_row(item, ctx, **where) -> RowOutcome:
    """The whole row: fetch its studies, record on the item what arrived where, audit it, and fail the
    item with numbers when anything expected is missing."""
    outcome = fetch_row(item, ctx, **where)
    root = item.job.downloads_root()
    item.expected, item.instances, item.bytes = outcome.expected, outcome.received, outcome.bytes
    item.path = "; ".join(sorted({str(s.folder.relative_to(root)) for s in outcome.studies}))[:500]
    item.result = {"studies": [{"StudyInstanceUID": s.study_instance_uid, "expected": s.expected,
                                "received": s.received, "folder": str(s.folder)} for s in outcome.studies]}
    item.save(update_fields=["expected", "instances", "bytes", "path", "result"])
    record(item.job.created_by, "study.retrieved", f"server:{item.server_name}", job=item.job_id,
           line=item.line, studies=[s.study_instance_uid for s in outcome.studies], instances=item.instances)
    problem = shortfall_message(item.server_name, outcome)
    if problem:
        raise ItemFailed(problem)
    return outcome


def _stage_into(staging: MoveStaging, folder: Path):
    def on_instance(instance) -> int:
        staging.write(folder, instance.sop_instance_uid, instance.data)
        return 0x0000

    return on_instance


def _wait_for_staged(staging: MoveStaging, folder: Path, expected: int | None) -> list[Path]:
    """What a C-MOVE staged; our receiver is another process and may trail the final response a little."""
    staged = staging.instances(folder)
    if expected is not None:
        deadline = time.monotonic() + RECEIVER_GRACE_SECONDS
        while len(staged) < expected and time.monotonic() < deadline:
            time.sleep(0.1)
            staged = staging.instances(folder)
    return staged


def shortfall_message(server_name: str, outcome: RowOutcome) -> str | None:
    """None when every expected instance arrived; otherwise the numbers, in words."""
    missing = [s for s in outcome.studies if s.expected is not None and s.received < s.expected]
    if not missing:
        return None
    parts = [f"study {s.study_instance_uid}: received {s.received} of {s.expected} instances"
             + (f" ({s.failed_on_pacs} failed on the PACS side)" if s.failed_on_pacs else "") for s in missing]
    return f"Incomplete retrieval from {server_name}: " + "; ".join(parts) + ". Files that arrived were kept."
