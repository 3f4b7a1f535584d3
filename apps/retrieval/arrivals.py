"""What arrived for one study, checked against what we asked for before anything is filed.

Whatever reaches the receiver or a C-GET is hostile until checked. As each instance arrives, the dataset's
own UIDs (read while its structure is checked, so at no extra cost) must name the requested study and the
SOP Instance UID it was sent under; an instance that does not is staged apart, under `foreign/<reason>/`.
When the PACS listed the study's instances, only those are ours. Everything else is quarantined, never
filed."""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from apps.dicom.wire.received import ReceivedInstance

log = logging.getLogger(__name__)
FOREIGN = "foreign"
WITHHELD = "withheld"  # in a quarantine: the study's own instances that arrived with foreign ones
REASONS = {
    "other-study": "of another study",
    "other-series": "of another series than the one moved",
    "sop-mismatch": "whose dataset names another SOP Instance UID than it was sent as",
    "unlisted": "not among the instances the PACS listed for the study",
    "other-patient": "naming another PatientID than the PACS's C-FIND answered",
    "duplicate": "sent again under a SOP Instance UID already received, with other content",
}


def foreign_reason(instance: ReceivedInstance, study_uid: str, series_uid: str = "", patient_id: str = ""
                   ) -> str | None:
    """Why an arriving instance is not part of `study_uid` (and of `series_uid`, when the move was of one
    series, and of `patient_id`, the PatientID the C-FIND answered, when it is ASCII as nearly all are): a
    key of REASONS, or None when it is."""
    if instance.identity.study != study_uid:
        return "other-study"
    if series_uid and instance.identity.series != series_uid:
        return "other-series"
    if not instance.self_consistent:
        return "sop-mismatch"
    if patient_id and instance.identity.patient != patient_id.strip() and patient_id.isascii():
        return "other-patient"
    return None


def arrival_folder(folder: Path, reason: str | None) -> Path:
    """Where an arriving instance is staged: the move's folder, or apart in it when it is foreign."""
    return folder / FOREIGN / reason if reason else folder


@dataclass
class Arrivals:
    matching: list[Path] = field(default_factory=list)
    foreign: list[tuple[Path, str]] = field(default_factory=list)  # (staged file, reason key)
    folder: Path | None = None  # where they wait, when it is the retrieval's alone (a finished C-GET's)

    def reasons(self) -> str:
        counts: dict[str, int] = {}
        for _, why in self.foreign:
            counts[why] = counts.get(why, 0) + 1
        return "; ".join(f"{n} {REASONS[why]}" for why, n in sorted(counts.items()))


def sort_arrivals(folder: Path, staged: list[Path], expected_sops: set[str] | None = None) -> Arrivals:
    """The staged files of a study's folder that are ours (of `expected_sops`, when given), and the rest."""
    arrivals = Arrivals()
    for path in staged:
        if expected_sops is not None and path.stem not in expected_sops:
            arrivals.foreign.append((path, "unlisted"))
        else:
            arrivals.matching.append(path)
    for reason_folder in sorted((folder / FOREIGN).iterdir()) if (folder / FOREIGN).is_dir() else []:
        arrivals.foreign += [(path, reason_folder.name) for path in sorted(reason_folder.glob("*.dcm"))]
    return arrivals


def quarantine(foreign: list[tuple[Path, str]], folder: Path) -> Path:
    """Move foreign files out of staging into `folder/<reason>/` (kept for inspection, never filed)."""
    for path, why in foreign:
        (folder / why).mkdir(parents=True, exist_ok=True)
        target, n = folder / why / path.name, 0
        while os.path.lexists(target):  # a study's parts share its quarantine: keep every copy
            n += 1
            target = folder / why / f"{path.stem}~{n}{path.suffix}"
        shutil.move(path, target)
    withheld = sum(why == WITHHELD for _, why in foreign)
    log.warning("quarantined %d instances that were not part of the request (and %d of the study withheld with "
                "them) in %s", len(foreign) - withheld, withheld, folder)
    return folder
