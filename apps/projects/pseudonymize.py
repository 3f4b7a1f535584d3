"""De-identifying files for a project: what retrieval, delivery and sending call. One Pseudonymizer per job
(or worker) keeps the project's recipe, with its UID cache, and the patients already looked up; the map
in the database keeps them consistent across jobs and processes."""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from apps.dicom import deidentify
from apps.dicom.deidentify import CannotDeidentify, Deidentified, HeldBack  # noqa: F401 - callers catch these
from apps.retrieval.layout import study_folder


class Pseudonymizer:
    def __init__(self, project):
        self.project = project
        self.recipe = project.recipe()
        self._patients: dict[str, deidentify.Patient] = {}

    def patient(self, patient_id: str) -> deidentify.Patient:
        found = self._patients.get(patient_id)
        if found is None:
            found = self._patients[patient_id] = self.project.patient(patient_id)
        return found

    def file(self, source: bytes | str | os.PathLike) -> Deidentified:
        """The de-identified bytes of one Part-10 instance (bytes, or a regular file's path), its new SOP
        Instance UID and the values the download layout uses (pseudonym, shifted date, modality).
        Raises HeldBack (likely burned-in text) or CannotDeidentify, each with a `reason`."""
        data = source if isinstance(source, (bytes, bytearray, memoryview)) else _read_regular(source)
        return deidentify.deidentify_bytes(bytes(data), self.recipe, self.patient)

    def folder(self, root: Path, server: str, result: Deidentified) -> Path:
        """<root>/<SERVER>/<shifted date>_<pseudonym>_<modality>, the retrieval layout with the new values."""
        return study_folder(root, server, result.study_date, result.patient_id, result.modality)

    def write(self, source, root: Path, server: str) -> tuple[Path, Deidentified]:
        """De-identify `source` and write it as <folder>/<new SOP Instance UID>.dcm (written aside, then
        renamed: a reader never sees half a file). Returns the path and the result."""
        result = self.file(source)
        folder = self.folder(root, server, result)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{result.sop_instance_uid}.dcm"
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".deid-", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(result.data)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return target, result


def _read_regular(path) -> bytes:
    """A regular file's bytes; FIFOs, devices and directories are refused without blocking on them."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        handle = os.open(path, flags)
    except OSError as exc:
        raise CannotDeidentify(f"cannot open {Path(path).name}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(handle).st_mode):
        os.close(handle)
        raise CannotDeidentify(f"{Path(path).name} is not a regular file")
    with os.fdopen(handle, "rb") as fh:
        return fh.read()
