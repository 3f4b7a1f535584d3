"""STOW-RS (PS3.18 10.5): each part of a multipart/related; type="application/dicom" body, read from the
request as it arrives into a staging file of its own (apps/dicom/multipart_reader.py: memory stays flat at
any size), checked as the receiver checks a C-STORE (complete Part-10 DICOM, the UIDs it must carry, the
study of the URL), and once the whole body proved well formed, filed under
DOWNLOADS_DIR/received/<account>/dicomweb/<study>/<sop>.dcm without ever replacing other bytes and
catalogued for the account. The answer lists what was stored (ReferencedSOPSequence) and what failed
(FailedSOPSequence with a FailureReason), one entry per part; a part that fails, fails alone. A body that is
not well formed (cut short, headers without end, too many parts) files nothing."""
from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from apps.catalog.filing import catalog_files
from apps.dicom import files, multipart, split
from apps.dicom.catalog_entry import EntryError, read_entry
from apps.dicom.errors import InvalidDicomFile
from apps.dicom.multipart_reader import CHUNK_BYTES, Part
from apps.dicom.paths import open_regular

log = logging.getLogger(__name__)

CANNOT_UNDERSTAND = 0xC000
DOES_NOT_MATCH = 0xA900
DUPLICATE = 0x0111
OUT_OF_RESOURCES = 0xA700
PREAMBLE_AND_MARKER = 132  # a Part-10 file's first bytes: 128 of preamble, then "DICM"
STAGING = ".stow"  # in an account's dicomweb folder: one folder per request in flight
STALE_SECONDS = 24 * 3600  # no request lasts this long: what is older a killed worker left


@dataclass
class Outcome:
    stored: list[dict] = field(default_factory=list)  # {"class", "sop", "study", "series"}
    failed: list[dict] = field(default_factory=list)  # {"class", "sop", "reason", "why", "part"}
    parts: int = 0

    @property
    def studies(self) -> list[str]:
        return sorted({s["study"] for s in self.stored})


def _fail(outcome, part_no, reason, why, sop_class="", sop=""):
    outcome.failed.append({"class": sop_class, "sop": sop, "reason": reason, "why": why, "part": part_no})


@dataclass
class _Staged:
    number: int
    path: Path
    entry: dict


def store_parts(parts: Iterable[Part], folder: Path, owner, *, study: str | None = None) -> Outcome:
    """Stage and check every part, then file those that passed. The reader's MultipartError passes (and
    nothing is filed); the staging folder goes either way."""
    outcome, staged = Outcome(), []
    _sweep(folder / STAGING)
    staging = folder / STAGING / uuid.uuid4().hex  # beside the study folders: filing is a hard link
    try:
        for part in parts:
            outcome.parts = part.number
            checked = _stage(part, staging, outcome, study)
            if checked:
                staged.append(checked)
        written = []
        for part in staged:
            entry = part.entry
            target = folder / entry["study_instance_uid"] / f"{entry['sop_instance_uid']}.dcm"
            problem = _place(part.path, target)
            if problem:
                _fail(outcome, part.number, DUPLICATE if problem == "other" else OUT_OF_RESOURCES,
                      f"part {part.number}: " + ("an instance with this SOPInstanceUID and other content is "
                                                 "already stored; it is not replaced" if problem == "other"
                                                 else problem), entry["sop_class_uid"], entry["sop_instance_uid"])
                continue
            written.append(target)
            outcome.stored.append({"class": entry["sop_class_uid"], "sop": entry["sop_instance_uid"],
                                   "study": entry["study_instance_uid"], "series": entry["series_instance_uid"]})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    outcome.failed.sort(key=lambda f: f["part"])
    if written:
        catalog_files(written, source="stored", owner=owner)
    return outcome


def _sweep(staging: Path) -> None:
    """Remove what requests whose worker was killed left staged (up to a body's size each)."""
    cutoff = time.time() - STALE_SECONDS
    try:
        with os.scandir(staging) as entries:
            stale = [entry.path for entry in entries if entry.stat(follow_symlinks=False).st_mtime < cutoff]
    except OSError:
        return
    for path in stale:
        log.info("removing a STOW-RS staging folder left by a request that never ended")
        shutil.rmtree(path, ignore_errors=True)


def _stage(part: Part, staging: Path, outcome: Outcome, study: str | None) -> _Staged | None:
    """The part's content in a staging file, checked; None (the failure recorded, the file gone) when it
    cannot be stored. What is not read of a refused part the reader skips."""
    number = part.number
    main, _ = multipart.parse_media_type(part.content_type or "application/dicom")
    if main != "application/dicom":
        _fail(outcome, number, CANNOT_UNDERSTAND, f"part {number} is {main[:64]}, not application/dicom")
        return None
    pieces, head = part.chunks(), bytearray()
    for piece in pieces:
        head += piece
        if len(head) >= PREAMBLE_AND_MARKER:
            break
    if head[128:PREAMBLE_AND_MARKER] != b"DICM":  # no file made for what cannot be DICOM (millions of tiny parts)
        _fail(outcome, number, CANNOT_UNDERSTAND, f"part {number}: not a DICOM file (no 'DICM' marker after the "
                                                  "128-byte preamble)")
        return None
    path = staging / str(number)
    try:
        staging.mkdir(parents=True, exist_ok=True)
        with open(path, "xb") as out:
            out.write(head)
            for piece in pieces:
                out.write(piece)
            out.flush()
            checked = _check(part, path, outcome, study)
            if checked:
                os.fsync(out.fileno())
    except OSError as exc:
        log.warning("STOW-RS could not write an instance: %s", exc.strerror or exc)
        _fail(outcome, number, OUT_OF_RESOURCES, f"part {number}: the portal could not write it "
                                                 f"({exc.strerror or exc})")
        checked = None
    if checked is None:
        path.unlink(missing_ok=True)
    return checked


def _check(part: Part, path: Path, outcome: Outcome, study: str | None) -> _Staged | None:
    """The staged part proven complete DICOM (its structure walked in place, the pixel data never read)
    whose UIDs agree with each other and with the URL's study."""
    number, name = part.number, f"{path}: "
    try:
        info = files.read_meta(path)
        with split.open_complete(path, info):
            pass
        entry = read_entry(path)
    except InvalidDicomFile as exc:
        _fail(outcome, number, CANNOT_UNDERSTAND, f"part {number}: {exc.message.removeprefix(name)}")
        return None
    except EntryError as exc:
        _fail(outcome, number, DOES_NOT_MATCH, f"part {number}: {exc}")
        return None
    except Exception as exc:  # noqa: BLE001 - whatever pydicom trips on, this part fails alone
        _fail(outcome, number, CANNOT_UNDERSTAND, f"part {number}: unreadable DICOM ({type(exc).__name__})")
        return None
    sop, sop_class = entry["sop_instance_uid"], entry["sop_class_uid"]
    if info.sop_instance_uid != sop:
        _fail(outcome, number, DOES_NOT_MATCH, f"part {number}: the file meta names another SOPInstanceUID "
              "than the dataset", sop_class, sop)
        return None
    if study and entry["study_instance_uid"] != study:
        _fail(outcome, number, DOES_NOT_MATCH, f"part {number}: the instance belongs to another study than "
              "the URL names", sop_class, sop)
        return None
    return _Staged(number, path, entry)


def _place(staged: Path, target: Path) -> str:
    """Link the staged file at `target` unless a file is there: "" when stored (or the same bytes were
    there), "other" when other bytes are, or the OS error in words."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(staged, target)  # never replaces: fails when the name exists
    except FileExistsError:
        return "" if _same_bytes(staged, target) else "other"
    except OSError as exc:
        log.warning("STOW-RS could not write an instance: %s", exc.strerror or exc)
        return f"the portal could not write it ({exc.strerror or exc})"
    return ""


def _same_bytes(staged: Path, stored: Path) -> bool:
    """Whether the file stored at a name holds exactly the staged bytes, compared piece by piece."""
    try:
        with open(staged, "rb") as ours, open_regular(stored) as theirs:
            if os.fstat(ours.fileno()).st_size != os.fstat(theirs.fileno()).st_size:
                return False
            while piece := ours.read(CHUNK_BYTES):
                if theirs.read(len(piece)) != piece:
                    return False
            return True
    except OSError:
        return False


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
