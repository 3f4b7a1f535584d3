"""Filing for a research project: each staged instance is de-identified once, as it is filed (read from
staging, de-identified in memory, written under the pseudonymized layout as <new SOP UID>.dcm, never
a second pass over filed files); the staged original is removed with the staging folder. An instance
held back (its pixels may show the patient) or that cannot be de-identified is not filed: it is listed
with its reason under the project's UID, never its original one."""
from __future__ import annotations

import errno
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from apps.dicom import deidentify, paths
from apps.dicom.deid_stream import shift_dates
from apps.projects.pseudonymize import CannotDeidentify, Deidentified, HeldBack, Pseudonymizer
from apps.retrieval.layout import FilingFailed, study_folder

EARLY_POLL_SECONDS = 0.02


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
                try:
                    result = deidentify.deidentify_bytes(paths.read_regular(path), self.pseudonymizer.recipe,
                                                         self._patient)
                    target = self.scratch / f"{len(self._done):06d}.dcm"
                    target.write_bytes(result.data)
                except (_Unknown, deidentify.DeidentifyError, OSError, paths.NotRegularFile):
                    continue  # the row does it again, and says why if it fails
                self._done[str(path)] = (target, result)
            if last or self._stop.wait(EARLY_POLL_SECONDS):
                return

    def committer(self, target: Path) -> Callable[[list[Path]], Filed]:
        """What files a project's whole study into `target` (holding.StudyHolds.settle's `commit`)."""
        def commit(staged: list[Path]) -> Filed:
            try:
                return self.file(staged, lambda result: target)
            except DeidentifiedFilingFailed as exc:
                raise FilingFailed(exc.reason, []) from None
        return commit

    def file(self, staged: list[Path], folder_of: Callable[[Deidentified], Path]) -> Filed:
        """File the checked instances: the early results moved into place, the rest de-identified now."""
        self.stop()
        early = [path for path in staged if str(path) in self._done]
        rest = [path for path in staged if str(path) not in self._done]
        filed, written = Filed(), []
        try:
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
    filed.bytes += len(result.data)
    filed.pseudonym = result.patient_id
    if target.parent not in filed.folders:
        filed.folders.append(target.parent)
