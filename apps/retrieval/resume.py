"""Retries fetch only what is missing. A study that arrived in part (a series failed, the PACS timed out after
1,800 of 2,000 instances, a worker died) has its checked instances filed in its case folder already; the next
run of the row moves only the rest: the missing series (SERIES level), or the missing instances (IMAGE level)
when the PACS lists the study's instances, and counts the instances already filed as kept.

Trust: only files the portal filed itself are counted, and only as what their own headers say they are (the
study's StudyInstanceUID, a SOP Instance UID equal to the file's name, a series the PACS lists for the study):
everything in a case folder passed the arrival checks when it was filed (arrivals.py, holding.py). What the
retry moves is checked as any move is, part by part; a part bringing anything foreign quarantines what this
run moved of the study, while the series filed by earlier runs stay (they were verified when they came).
Without a usable listing (the PACS lists no instances, or a count that disagrees with the one it gave), a
series is kept only when all of its instances are filed, and moved again whole otherwise."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from apps.retrieval.series import count_of, series_of

log = logging.getLogger(__name__)
IMAGE_CHUNK = 100  # SOP Instance UIDs per IMAGE-level move: an identifier of a few KiB, one PDU for any PACS
_TAGS = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"]


@dataclass
class Kept:
    """The instances of a study already filed in its case folder, which this run does not move again."""

    study_instance_uid: str
    folder: Path
    instances: int
    bytes: int


def filed_instances(folder: Path, study_uid: str) -> dict[str, tuple[str, int]]:
    """{SOP Instance UID: (SeriesInstanceUID, size)} of `study_uid`'s instances filed in `folder`, read from
    their headers; a file that is not a regular DICOM file named as its SOP Instance UID is not counted."""
    found: dict[str, tuple[str, int]] = {}
    try:
        entries = list(os.scandir(folder))
    except OSError:  # no folder yet: nothing filed
        return found
    for entry in entries:
        if not entry.name.endswith(".dcm") or not entry.is_file(follow_symlinks=False):
            continue
        try:
            ds = pydicom.dcmread(entry.path, stop_before_pixels=True, specific_tags=_TAGS)
        except (InvalidDicomError, OSError, ValueError, EOFError, AttributeError, KeyError):
            continue
        sop = str(ds.get("SOPInstanceUID", "") or "")
        if str(ds.get("StudyInstanceUID", "") or "") != study_uid or sop != entry.name[:-len(".dcm")]:
            continue
        found[sop] = (str(ds.get("SeriesInstanceUID", "") or ""), entry.stat(follow_symlinks=False).st_size)
    return found


def instance_listing(assoc, study_uid: str, series_uid: str | None = None) -> dict[str, str]:
    """{SOP Instance UID: SeriesInstanceUID} of the study (or series) as the PACS lists it at IMAGE level."""
    query = {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid or "", "SOPInstanceUID": ""}
    listed = {}
    for ds in assoc.find("IMAGE", query):
        sop, series = str(ds.get("SOPInstanceUID", "") or ""), str(ds.get("SeriesInstanceUID", "") or "")
        if sop and (not series_uid or series == series_uid):
            listed[sop] = series or (series_uid or "")
    return listed


def _image_parts(part, series_uid: str, missing: list[str]) -> list:
    return [replace(part, expected=len(chunk), sops=set(chunk), series_uid=series_uid, instance_uids=tuple(chunk))
            for chunk in (missing[i:i + IMAGE_CHUNK] for i in range(0, len(missing), IMAGE_CHUNK))]


def _from_listing(part, listed: dict[str, str], present: dict) -> tuple[list, set[str]]:
    """The parts that move what `listed` has and `present` lacks: a series missing whole at SERIES level,
    a series missing in part at IMAGE level; and the SOPs kept."""
    kept = {sop for sop in listed if sop in present}
    parts = []
    by_series: dict[str, list[str]] = {}
    for sop, series in listed.items():
        by_series.setdefault(series, []).append(sop)
    for series, sops in by_series.items():
        missing = sorted(sop for sop in sops if sop not in present)
        if not missing:
            continue
        if len(missing) == len(sops) and series:
            parts.append(replace(part, expected=len(sops), sops=set(sops), series_uid=series, instance_uids=()))
        else:
            parts += _image_parts(part, series, missing)
    return parts, kept


def _from_series_counts(assoc, part, present: dict) -> tuple[list, set[str]] | None:
    """Without a listing: series complete on disk are kept, the others moved again whole. None when the
    PACS gives no usable series counts (the part is moved again whole)."""
    per_series: dict[str, set[str]] = {}
    for sop, (series, _) in present.items():
        per_series.setdefault(series, set()).add(sop)
    parts, kept, total = [], set(), 0
    for series in series_of(assoc, part.uid):
        uid, count = str(series.get("SeriesInstanceUID", "") or "").strip(), count_of(series)
        if not uid or count is None:
            return None
        if part.series_uid and uid != part.series_uid:
            continue
        total += count
        if len(per_series.get(uid, ())) == count:
            kept |= per_series[uid]
        else:
            parts.append(replace(part, expected=count, sops=None, series_uid=uid, instance_uids=()))
    if part.expected is not None and total != part.expected:
        return None  # the series do not account for the part: trust none of it
    return parts, kept


def missing_parts(assoc, plans: list, present_of) -> tuple[list, list[Kept]]:
    """`plans` reduced to what is missing from each study's case folder (`present_of(plan)` -> (folder,
    filed_instances)), and what is kept of each study. A study with nothing filed keeps its plans."""
    out, kept_all, groups = [], [], {}
    for plan in plans:
        groups.setdefault(plan.uid, []).append(plan)
    for uid, parts in groups.items():
        folder, present = present_of(parts[0])
        if not present:
            out += parts
            continue
        kept_sops: set[str] = set()
        for part in parts:
            listed = instance_listing(assoc, uid, part.series_uid)
            if listed and (part.expected is None or len(listed) == part.expected):
                moved, kept = _from_listing(part, listed, present)
            else:
                split = _from_series_counts(assoc, part, present)
                moved, kept = split if split is not None else ([part], set())
            out += moved
            kept_sops |= kept
        if kept_sops:
            kept_all.append(Kept(uid, folder, len(kept_sops), sum(present[sop][1] for sop in kept_sops)))
            log.info("study %s: %d instances already filed are kept; %d parts to move", uid, len(kept_sops),
                     sum(p.uid == uid for p in out))
    return out, kept_all
