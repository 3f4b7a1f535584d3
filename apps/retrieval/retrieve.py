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

from django.conf import settings

from apps.dicom import dimse
from apps.dicom.errors import DicomTimeout
from apps.dicom.engines import C_GETS
from apps.dicom.staging import MoveStaging
from apps.jobs.errors import ItemCanceled, ItemFailed, ItemTimedOut
from apps.retrieval.layout import file_into, study_folder
from apps.servers.models import DicomServer, local_ae

STUDY_RETURN_KEYS = ("PatientID", "StudyDate", "StudyInstanceUID", "ModalitiesInStudy",
                     "NumberOfStudyRelatedInstances")
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


def row_query(item) -> dict[str, str]:
    query = {key: "" for key in STUDY_RETURN_KEYS}
    if item.study_instance_uid:
        query["StudyInstanceUID"] = item.study_instance_uid
    if item.patient_id:
        query["PatientID"] = item.patient_id
    if item.study_date:
        query["StudyDate"] = item.study_date
    if item.modality:
        query["ModalitiesInStudy"] = item.modality
    return query


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


def retrieve_row(item, ctx, *, downloads: Path | None = None, staging_root: Path | None = None) -> RowOutcome:
    server: DicomServer = item.dicom_server
    peer = server.as_peer(retrieve_timeout=item.job.timeout)
    local = local_ae()
    downloads = Path(downloads or item.job.downloads_root())
    staging = MoveStaging(staging_root or settings.STAGING_DIR)
    # Message IDs are 16-bit; the item id keeps concurrent moves of this AE apart (DESIGN.md §3 Receiver).
    message_id = item.pk % 65535 + 1
    outcome = RowOutcome()
    purpose = "get" if server.retrieve_method == DicomServer.RetrieveMethod.C_GET else "query"
    folder = staging.folder(local.ae_title, message_id)
    # One association at a time, so the server's association limit holds: the C-FINDs (and C-MOVEs)
    # share one; a C-GET runs on its own (the CGET_ENGINE, by default the socket-level SCU) after that one closed.
    with ctx.association_slot(server):
        with dimse.associate(peer, local, purpose="query") as assoc:
            studies = assoc.find("STUDY", row_query(item))
            if not studies:
                raise ItemFailed(f"No study on {server.name} matches line {item.line} ({item.describe()}).")
            plans = [(study, _expected_count(assoc, study)) for study in studies]
            if purpose == "query":
                for study, expected in plans:
                    _fetch_study(item, ctx, study, expected, outcome, staging, folder, downloads,
                                 lambda query: assoc.move(query, local.ae_title, message_id=message_id))
        if purpose == "get":
            for study, expected in plans:
                _fetch_study(item, ctx, study, expected, outcome, staging, folder, downloads,
                             lambda query: C_GETS[settings.CGET_ENGINE](peer, local, query, _stage_into(staging, folder),
                                                    message_id=message_id), wait_for_receiver=False)
    return outcome


def _fetch_study(item, ctx, study, expected, outcome: RowOutcome, staging: MoveStaging, folder: Path,
                 downloads: Path, retrieve, *, wait_for_receiver: bool = True) -> None:
    """Retrieve one study into an emptied staging folder, then file what arrived into the layout."""
    if ctx.should_stop():
        raise ItemCanceled()
    shutil.rmtree(folder, ignore_errors=True)  # a re-run starts from an empty staging folder
    try:
        result = retrieve({"StudyInstanceUID": study.StudyInstanceUID})
    except DicomTimeout as exc:
        raise ItemTimedOut(f"{exc} Raise the timeout (job or server) for large studies.") from exc
    staged = _wait_for_staged(staging, folder, expected if wait_for_receiver else None)
    target = study_folder(downloads, item.dicom_server.name, str(study.get("StudyDate", "") or ""),
                          str(study.get("PatientID", item.patient_id) or item.patient_id),
                          _modality_label(item, study))
    size = file_into(target, staged)
    outcome.studies.append(StudyOutcome(study.StudyInstanceUID, target, expected, len(staged), size,
                                        failed_on_pacs=result.failed))
    ctx.heartbeat(instances=outcome.received, bytes=sum(s.bytes for s in outcome.studies))


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
