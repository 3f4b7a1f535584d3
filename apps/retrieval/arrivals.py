"""What arrived for one study, checked against what we asked for before anything is filed.

Whatever reaches the receiver or a C-GET is hostile until checked: an instance is filed only if its dataset
says it belongs to the requested study, its SOP Instance UID is the one it was announced under, and (when
the PACS listed the study's instances) it is one of them. Anything else is quarantined, never filed."""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

log = logging.getLogger(__name__)
IDENTITY_TAGS = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"]


@dataclass
class Arrivals:
    matching: list[Path] = field(default_factory=list)
    foreign: list[tuple[Path, str]] = field(default_factory=list)  # (staged file, why it is not ours)

    def reasons(self) -> str:
        counts: dict[str, int] = {}
        for _, why in self.foreign:
            counts[why] = counts.get(why, 0) + 1
        return "; ".join(f"{n} {why}" for why, n in sorted(counts.items()))


def sort_arrivals(staged: list[Path], study_uid: str, expected_sops: set[str] | None = None) -> Arrivals:
    """Split staged files into those of `study_uid` (and of `expected_sops`, when given) and the rest."""
    arrivals = Arrivals()
    for path in staged:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=IDENTITY_TAGS)
            study, sop = str(ds.StudyInstanceUID), str(ds.SOPInstanceUID)
        except (InvalidDicomError, AttributeError, OSError, ValueError):
            arrivals.foreign.append((path, "not readable as DICOM"))
            continue
        if study != study_uid:
            arrivals.foreign.append((path, "of another study"))
        elif sop != path.stem:
            arrivals.foreign.append((path, "whose dataset names another SOP Instance UID than it was sent as"))
        elif expected_sops is not None and sop not in expected_sops:
            arrivals.foreign.append((path, "not among the instances the PACS listed for the study"))
        else:
            arrivals.matching.append(path)
    return arrivals


def quarantine(foreign: list[tuple[Path, str]], folder: Path) -> Path:
    """Move foreign files out of staging into `folder` (kept for inspection, never filed)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path, _ in foreign:
        shutil.move(path, folder / path.name)
    log.warning("quarantined %d instances that were not part of the request in %s", len(foreign), folder)
    return folder
