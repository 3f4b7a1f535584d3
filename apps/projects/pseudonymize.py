"""De-identifying files for a project: what retrieval, delivery and sending call. One Pseudonymizer per job
(or worker) keeps the project's recipe, with its UID cache, and the patients already looked up; the map
in the database keeps them consistent across jobs and processes."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from apps.dicom import deidentify
from apps.dicom.deidentify import CannotDeidentify, Deidentified, HeldBack  # noqa: F401 - callers catch these
from apps.dicom.errors import InvalidDicomFile


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

    def file(self, source: bytes | str | os.PathLike, before=None) -> Deidentified:
        """The de-identified bytes of one Part-10 instance (bytes, or a regular file's path), its new SOP
        Instance UID and the values the download layout uses (pseudonym, shifted date, modality); of a large
        file, its head, the pixel data left in the file (`rest`). `before` (bytes -> bytes) changes a file's
        bytes first. Raises HeldBack (likely burned-in text) or CannotDeidentify, each with a `reason`."""
        if isinstance(source, (bytes, bytearray, memoryview)):
            return deidentify.deidentify_bytes(bytes(source), self.recipe, self.patient)
        return deidentify.deidentify_file(source, self.recipe, self.patient, before=before)

    def write(self, source, folder_of: Callable[[Deidentified], Path]) -> tuple[Path, Deidentified]:
        """De-identify `source` and write it as <folder>/<new SOP Instance UID>.dcm, the folder being the
        caller's layout for the new values (e.g. retrieval's <SERVER>/<shifted date>_<pseudonym>_<modality>);
        written aside, then renamed: a reader never sees half a file. Returns the path and the result."""
        result = self.file(source)
        folder = Path(folder_of(result))
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{result.sop_instance_uid}.dcm"
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".deid-", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as out:
                result.write_to(out)
            os.replace(temporary, target)
        except InvalidDicomFile as exc:  # a large original that changed while its pixel data was copied
            Path(temporary).unlink(missing_ok=True)
            raise CannotDeidentify(f"changed while it was de-identified ({exc.message})") from None
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return target, result

