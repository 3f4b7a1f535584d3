"""STOW-RS (PS3.18 10.5): each part of a multipart/related; type="application/dicom" body checked as the
receiver checks a C-STORE (complete Part-10 DICOM, the UIDs it must carry, the study of the URL), stored
under DOWNLOADS_DIR/received/<account>/dicomweb/<study>/<sop>.dcm without ever replacing other bytes, and
catalogued for the account. The answer lists what was stored (ReferencedSOPSequence) and what failed
(FailedSOPSequence with a FailureReason), one entry per part; a part that fails, fails alone."""
from __future__ import annotations

import io
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pydicom

from apps.catalog.filing import catalog_files
from apps.dicom import files, multipart
from apps.dicom.catalog_entry import EntryError, entry_from_dataset
from apps.dicom.errors import InvalidDicomFile
from apps.dicom.paths import read_regular

log = logging.getLogger(__name__)

CANNOT_UNDERSTAND = 0xC000
DOES_NOT_MATCH = 0xA900
DUPLICATE = 0x0111
OUT_OF_RESOURCES = 0xA700


@dataclass
class Outcome:
    stored: list[dict] = field(default_factory=list)  # {"class", "sop", "study", "series"}
    failed: list[dict] = field(default_factory=list)  # {"class", "sop", "reason", "why", "part"}

    @property
    def studies(self) -> list[str]:
        return sorted({s["study"] for s in self.stored})


def _fail(outcome, part_no, reason, why, sop_class="", sop=""):
    outcome.failed.append({"class": sop_class, "sop": sop, "reason": reason, "why": why, "part": part_no})


def store_parts(body, parts: list[multipart.Part], folder: Path, owner, *, study: str | None = None) -> Outcome:
    outcome = Outcome()
    written = []
    for number, part in enumerate(parts, 1):
        main, _ = multipart.parse_media_type(part.content_type or "application/dicom")
        if main != "application/dicom":
            _fail(outcome, number, CANNOT_UNDERSTAND, f"part {number} is {main}, not application/dicom")
            continue
        data = bytes(body[part.start:part.end])
        try:
            info = files.inspect(data)
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            entry = entry_from_dataset(ds, len(data))
        except InvalidDicomFile as exc:
            _fail(outcome, number, CANNOT_UNDERSTAND, f"part {number}: {exc.message.removeprefix('<bytes>: ')}")
            continue
        except EntryError as exc:
            _fail(outcome, number, DOES_NOT_MATCH, f"part {number}: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - whatever pydicom trips on, this part fails alone
            _fail(outcome, number, CANNOT_UNDERSTAND, f"part {number}: unreadable DICOM ({type(exc).__name__})")
            continue
        sop, sop_class = entry["sop_instance_uid"], entry["sop_class_uid"]
        if info.sop_instance_uid != sop:
            _fail(outcome, number, DOES_NOT_MATCH, f"part {number}: the file meta names another SOPInstanceUID "
                  "than the dataset", sop_class, sop)
            continue
        if study and entry["study_instance_uid"] != study:
            _fail(outcome, number, DOES_NOT_MATCH, f"part {number}: the instance belongs to another study than "
                  "the URL names", sop_class, sop)
            continue
        target = folder / entry["study_instance_uid"] / f"{sop}.dcm"
        problem = _place(target, data)
        if problem:
            _fail(outcome, number, DUPLICATE if problem == "other" else OUT_OF_RESOURCES,
                  f"part {number}: " + ("an instance with this SOPInstanceUID and other content is already "
                                        "stored; it is not replaced" if problem == "other" else problem),
                  sop_class, sop)
            continue
        written.append(target)
        outcome.stored.append({"class": sop_class, "sop": sop, "study": entry["study_instance_uid"],
                               "series": entry["series_instance_uid"]})
    if written:
        catalog_files(written, source="stored", owner=owner)
    return outcome


def _place(target: Path, data: bytes) -> str:
    """Write `data` at `target` unless a file is there: "" when stored (or the same bytes were there),
    "other" when other bytes are, or the OS error in words."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = target.parent / f".stow-{uuid.uuid4().hex}"
        with open(scratch, "xb") as fp:
            fp.write(data)
            fp.flush()
            os.fsync(fp.fileno())
        try:
            os.link(scratch, target)  # never replaces: fails when the name exists
        except FileExistsError:
            try:
                same = read_regular(target) == data
            except OSError:
                same = False
            return "" if same else "other"
        finally:
            scratch.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("STOW-RS could not write an instance: %s", exc.strerror or exc)
        return f"the portal could not write it ({exc.strerror or exc})"
    return ""


def answer(outcome: Outcome, url) -> tuple[int, dict]:
    """(HTTP status, DICOM JSON): 200 all stored, 202 some failed, 409 none stored (PS3.18 10.5.3)."""
    body = {}
    if len(outcome.studies) == 1:
        body["00081190"] = {"vr": "UR", "Value": [url(outcome.studies[0])]}
    if outcome.failed:
        body["00081198"] = {"vr": "SQ", "Value": [
            {"00081150": _ui(f["class"]), "00081155": _ui(f["sop"]),
             "00081197": {"vr": "US", "Value": [f["reason"]]}} for f in outcome.failed]}
    if outcome.stored:
        body["00081199"] = {"vr": "SQ", "Value": [
            {"00081150": _ui(s["class"]), "00081155": _ui(s["sop"]),
             "00081190": {"vr": "UR", "Value": [url(s["study"], s["series"], s["sop"])]}} for s in outcome.stored]}
    status = 200 if not outcome.failed else 202 if outcome.stored else 409
    return status, body


def _ui(value: str) -> dict:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}
