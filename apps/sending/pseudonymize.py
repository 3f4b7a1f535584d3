"""A research project's send: each file of the batch is read once into memory (a large one: its head, the
pixel data copied from the original as the copy is written), given the inbox folder's patient first (an
inbox run), de-identified for the project, and only then written to the item's work folder, as
`<new SOP Instance UID>.dcm`: no identified copy is ever written. The report names each file
by its pseudonym and new SOP Instance UID; a file that was never de-identified (not DICOM, held back
because its pixels may show the patient) by its place in the batch or its new UID, with the reason."""
from __future__ import annotations

from pathlib import Path

from apps.dicom import files
from apps.dicom.errors import InvalidDicomFile
from apps.dicom.rewrite import Patient, rewrite_patient_bytes
from apps.projects.pseudonymize import CannotDeidentify, HeldBack


def file_label(batch: int, index: int) -> str:
    """How a project's report names a file it has no pseudonym for: its place, never its path."""
    return f"batch {batch} file {index + 1}"


def neutral(reason: str, *originals: str) -> str:
    """A reason without the paths and names it may quote (a path may name the patient)."""
    for original in sorted((o for o in originals if o), key=len, reverse=True):
        reason = reason.replace(original, "…")
    return reason


def deidentify_all(job, sendable: list, work: Path, make) -> tuple[list, list[list[str]]]:
    """The batch's files de-identified into `work`; returns the new sendables (made by `make(name, path,
    info)`) and the [name, reason] of every file held back or that could not be de-identified."""
    pseudonymizer = job.project.pseudonymizer()
    patient = Patient(job.patient_id, job.patient_name) if job.patient_id else None
    work.mkdir(parents=True, exist_ok=True)
    done, skipped = [], []
    for entry in sendable:
        label = entry.relative  # its place in the batch (file_label)
        # the folder's patient first, in memory (of a large file, its head), then the project's pseudonym
        rewrite = (lambda data, label=label: rewrite_patient_bytes(data, patient, name=label)) if patient else None
        try:
            result = pseudonymizer.file(entry.path, before=rewrite)
        except HeldBack as exc:
            new_uid = pseudonymizer.recipe.uid(entry.info.sop_instance_uid)
            skipped.append([f"{new_uid}.dcm", f"held back: {exc.reason}"])
            continue
        except (CannotDeidentify, InvalidDicomFile) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "message", None) or str(exc)
            skipped.append([label, neutral(f"not de-identified: {reason}", str(entry.path), job.source_path)])
            continue
        target = work / f"{result.sop_instance_uid}.dcm"
        try:
            result.save(target)
        except InvalidDicomFile:
            skipped.append([label, "not de-identified: the file changed while it was read"])
            continue
        done.append(make(f"{result.patient_id}/{result.sop_instance_uid}.dcm", target, files.read_meta(target)))
    return done, skipped
