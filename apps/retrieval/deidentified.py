"""Filing for a research project. The receiver (and a C-GET) stage a project's instances de-identified
already (apps/dicom/deid_form.py: the bytes de-identified once, as they are written), so filing one is a
rename to <new SOP UID>.dcm under the pseudonymized layout, as for a plain retrieval; an instance the
project holds back (its pixels may show the patient) or that cannot be de-identified arrives as a
placeholder naming why, and is listed with its reason under the project's UID, never its original one.
Whatever was staged as it came (an instance that reached staging some other way) is de-identified here:
by a thread while the move still runs, else as it is filed; never a second pass over filed files."""
from __future__ import annotations

import errno
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from apps.dicom import deidentify
from apps.dicom.deid_stream import shift_dates
from apps.dicom.errors import InvalidDicomFile
from apps.dicom.staged import PLACEHOLDER
from apps.projects.pseudonymize import CannotDeidentify, Deidentified, HeldBack, Pseudonymizer
from apps.retrieval.layout import FilingFailed, study_folder

EARLY_POLL_SECONDS = 0.02
HEAD_BYTES = 4096  # enough for the preamble and any file meta the receiver writes


def staged_form(path: Path, new_uid: str) -> str | None:
    """How the receiver staged `path`: "" when de-identified already (a Part-10 file whose file meta names
    `new_uid`, the project's UID for the SOP Instance UID it is staged under), the reason when it staged a
    placeholder (held back, not de-identifiable), None when it is the instance as it came."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        head = os.read(fd, HEAD_BYTES)  # (staged by the receiver: a regular file; anything else fails here)
    except OSError:
        return None
    finally:
        os.close(fd)
    if head.startswith(PLACEHOLDER):
        return head[len(PLACEHOLDER):].decode("utf-8", "replace") or "not de-identified"
    if head[128:132] == b"DICM" and new_uid.encode("ascii") in head[132:]:
        return ""
    return None


@dataclass
class Filed:
    count: int = 0
    bytes: int = 0
    folders: list[Path] = field(default_factory=list)
    not_filed: list[tuple[str, str]] = field(default_factory=list)  # (new SOP Instance UID, reason)
    pseudonym: str = ""


class DeidentifiedFilingFailed(Exception):
    def __init__(self, reason: str, removed: int):
        super().__init__(reason)
        self.reason, self.removed = reason, removed


def file_deidentified(pseudonymizer: Pseudonymizer, staged: list[Path],
                      folder_of: Callable[[Deidentified], Path]) -> Filed:
    """De-identify and file each staged instance (named <SOP Instance UID>.dcm by the receiver) into
    `folder_of(result)`. A write that fails takes back what this call wrote, then raises
    DeidentifiedFilingFailed with the OS's reason."""
    filed, written = Filed(), []
    for path in staged:
        try:
            target, result = pseudonymizer.write(path, folder_of)
        except HeldBack as exc:
            filed.not_filed.append((pseudonymizer.recipe.uid(path.stem), f"held back: {exc.reason}"))
            continue
        except CannotDeidentify as exc:
            filed.not_filed.append((pseudonymizer.recipe.uid(path.stem), f"not de-identified: {exc.reason}"))
            continue
        except OSError as exc:
            for done in written:
                done.unlink(missing_ok=True)
            raise DeidentifiedFilingFailed(exc.strerror or str(exc), len(written)) from None
        written.append(target)
        _count(filed, target, result)
    return filed


def deidentified_folder(pseudonymizer: Pseudonymizer, downloads: Path, server: str, plan, label: str) -> Path:
    """Where a project's study is filed: <SERVER>/<shifted date>_<pseudonym>_<modality>, from the study's
    C-FIND answer, as its de-identified instances say (the date shifted with the dates option, else none)."""
    patient = pseudonymizer.patient(plan.patient_id)
    date = ""
    if deidentify.OPTION_DATES in pseudonymizer.recipe.options:
        date = shift_dates(str(plan.study.get("StudyDate", "") or ""), "DA", patient.date_shift_days) or ""
    return study_folder(downloads, server, date, patient.pseudonym, label)


class _Unknown(Exception):
    """A patient not looked up yet: the thread leaves the instance to the row (the map is the database's)."""


class EarlyDeidentifier:
    """De-identifies the instances a move has staged while it is still running, into `scratch` (one file
    per staged name), so the work overlaps the transfer: the row's thread waits on the PACS meanwhile, the
    receiver is another process. Nothing is filed here; `file()` files after the arrivals were checked,
    moving each early result into place and de-identifying what the thread had not reached. The thread
    touches no database: instances of a patient the row has not looked up (`known`) are left to `file()`."""

    def __init__(self, pseudonymizer: Pseudonymizer, list_staged: Callable[[], list[Path]], scratch: Path,
                 known: list[str] = ()):
        self.pseudonymizer, self.list_staged, self.scratch = pseudonymizer, list_staged, scratch
        for patient_id in known:
            pseudonymizer.patient(patient_id)
        self._patients = dict(pseudonymizer._patients)
        self._done: dict[str, tuple[Path, Deidentified]] = {}
        self._received: dict[str, str] = {}  # staged path -> staged_form() of what the receiver de-identified
        self._pseudonym = pseudonymizer.patient(known[0]).pseudonym if known else ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="early-deidentify", daemon=True)

    def __enter__(self) -> EarlyDeidentifier:
        self.scratch.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _patient(self, patient_id: str) -> deidentify.Patient:
        found = self._patients.get(patient_id)
        if found is None:
            raise _Unknown()
        return found

    def _run(self) -> None:
        tried: set[str] = set()
        while True:
            last = self._stop.is_set()
            try:
                staged = self.list_staged()
            except OSError:
                staged = []
            for path in staged:
                if self._stop.is_set() or str(path) in tried:
                    continue
                tried.add(str(path))
                form = staged_form(path, self.pseudonymizer.recipe.uid(path.stem))
                if form is not None:  # the receiver de-identifies this move's instances: nothing to do here
                    self._received[str(path)] = form
                    return
                try:
                    result = deidentify.deidentify_file(path, self.pseudonymizer.recipe, self._patient)
                    target = self.scratch / f"{len(self._done):06d}.dcm"
                    with open(target, "wb") as out:
                        result.write_to(out)
                except (_Unknown, deidentify.DeidentifyError, OSError, InvalidDicomFile):
                    continue  # the row does it again, and says why if it fails
                self._done[str(path)] = (target, result)
            if last or self._stop.wait(EARLY_POLL_SECONDS):
                return

    def committer(self, target: Path) -> Callable[[list[Path], list[Path]], Filed]:
        """What files a project's whole study into `target` (holding.StudyHolds.settle's `commit`); each
        instance is written de-identified, so no folder is taken whole (`movable` is not used)."""
        def commit(staged: list[Path], movable: list[Path]) -> Filed:
            try:
                return self.file(staged, lambda result: target)
            except DeidentifiedFilingFailed as exc:
                raise FilingFailed(exc.reason, []) from None
        return commit

    def file(self, staged: list[Path], folder_of: Callable[[Deidentified], Path]) -> Filed:
        """File the checked instances: those the receiver staged de-identified renamed into place (into
        `folder_of(None)`: the study's folder) and its placeholders listed as not filed, the early results
        moved into place, the rest de-identified now."""
        self.stop()
        recipe, filed, written, rest = self.pseudonymizer.recipe, Filed(), [], []
        try:
            made = None
            for path in staged:  # de-identified by the receiver: renamed into place
                key, new_uid = str(path), recipe.uid(path.stem)
                form = self._received.get(key)
                if form is None and key not in self._done:
                    form = staged_form(path, new_uid)
                if form is None:
                    rest.append(path)
                elif form:
                    filed.not_filed.append((new_uid, form))
                else:
                    folder = Path(folder_of(None))
                    if folder != made:
                        folder.mkdir(parents=True, exist_ok=True)
                        made = folder
                    target = folder / f"{new_uid}.dcm"
                    size = os.stat(path).st_size
                    _move(path, target)
                    written.append(target)
                    filed.count, filed.bytes, filed.pseudonym = filed.count + 1, filed.bytes + size, self._pseudonym
                    if folder not in filed.folders:
                        filed.folders.append(folder)
            early = [path for path in rest if str(path) in self._done]
            rest = [path for path in rest if str(path) not in self._done]
            for path in early:
                scratch, result = self._done[str(path)]
                folder = Path(folder_of(result))
                folder.mkdir(parents=True, exist_ok=True)
                target = folder / f"{result.sop_instance_uid}.dcm"
                _move(scratch, target)
                written.append(target)
                _count(filed, target, result)
        except OSError as exc:
            for done in written:
                done.unlink(missing_ok=True)
            raise DeidentifiedFilingFailed(exc.strerror or str(exc), len(written)) from None
        try:
            later = file_deidentified(self.pseudonymizer, rest, folder_of)
        except DeidentifiedFilingFailed as exc:
            for done in written:
                done.unlink(missing_ok=True)
            raise DeidentifiedFilingFailed(exc.reason, exc.removed + len(written)) from None
        filed.count += later.count
        filed.bytes += later.bytes
        filed.not_filed += later.not_filed
        filed.pseudonym = filed.pseudonym or later.pseudonym
        filed.folders += [f for f in later.folders if f not in filed.folders]
        return filed


def _move(source: Path, target: Path) -> None:
    try:
        os.replace(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.move(source, target)


def _count(filed: Filed, target: Path, result: Deidentified) -> None:
    filed.count += 1
    filed.bytes += result.size
    filed.pseudonym = result.patient_id
    if target.parent not in filed.folders:
        filed.folders.append(target.parent)
