"""One batch of an import: decide for each file whether it is new, a duplicate or a failure, render the
new ones (in the process pool) and file them.

The order keeps every cost where it belongs: an unchanged file (same path, size and mtime as a file
already looked at) is decided without opening it; any other file has its header read (pixel data
skipped) and is checked against both dedup keys; only new images are decoded. Filing rides on the
unique keys, so two imports racing for one image end with one row and one duplicate. Re-running a
batch (after a crash) recognises the images it filed itself and counts them as its own again."""
from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from django.db import IntegrityError, transaction

from apps.audit import record
from apps.dicom.header import HeaderError, ImageHeader, read_header
from apps.imports.models import (FileOutcome, ImportedImage, ImportedPatient, ImportItem, KnownFile,
                                 jpg_root)
from apps.imports.patients import disagreement, ensure_patients
from apps.imports.pool import render_all
from apps.jobs.errors import ItemCanceled

Outcome = FileOutcome.Outcome


@dataclass
class Candidate:
    path: Path
    stat: os.stat_result
    header: ImageHeader
    patient_id: str
    note: str = ""
    image: ImportedImage | None = None
    size: tuple[int, int] | None = None
    tmp: Path | None = None
    failure: str = ""
    same_as: "Candidate | None" = None  # an earlier file of this batch with one of the same keys

    @property
    def key(self) -> tuple[str, str]:
        return self.patient_id, self.path.name


def jpg_name(sop_instance_uid: str) -> str:
    """Relative JPEG path: fanned out over 256 folders so no folder holds millions of files."""
    return f"{hashlib.sha1(sop_instance_uid.encode()).hexdigest()[:2]}/{sop_instance_uid}.jpg"


@dataclass
class Ledger:
    """The batch's outcomes, written in one go at the end."""

    item: ImportItem
    outcomes: list[FileOutcome] = field(default_factory=list)
    known: dict[str, KnownFile] = field(default_factory=dict)

    def add(self, path: Path, outcome: str, *, reason: str = "", note: str = "", patient_id=None,
            stat=None, image_id=None, remember: bool = False):
        self.outcomes.append(FileOutcome(
            job_id=self.item.job_id, item=self.item, path=os.path.relpath(path, self.item.job.source_path)[:1024],
            outcome=outcome, reason=reason[:500], note=note[:500], patient_id=patient_id))
        if stat is not None and (remember or image_id):
            self.known[str(path)] = KnownFile(path=str(path), size=stat.st_size, mtime_ns=stat.st_mtime_ns,
                                              image_id=image_id, patient_id=patient_id, failure=reason[:500])

    def write(self):
        with transaction.atomic():
            FileOutcome.objects.filter(item=self.item).delete()
            FileOutcome.objects.bulk_create(self.outcomes)
            if self.known:
                KnownFile.objects.bulk_create(list(self.known.values()), update_conflicts=True, unique_fields=["path"],
                                              update_fields=["size", "mtime_ns", "image", "patient", "failure"])

    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys(Outcome.values, 0)
        for outcome in self.outcomes:
            counts[outcome.outcome] += 1
        return counts


def import_batch(item: ImportItem, ctx) -> None:
    ledger = Ledger(item)
    fresh = skip_known_files(item, ledger)
    stop_if_asked(ctx)
    candidates = read_headers(fresh, ledger)
    patients = ensure_patients({c.patient_id: c.header for c in reversed(candidates)}, item.job)
    for c in candidates:
        c.note = "; ".join(filter(None, [c.note, disagreement(patients[c.patient_id], c.header)]))
    new = match_existing(candidates, item, ledger, patients)
    stop_if_asked(ctx)
    render(new, ledger, patients)
    file_images([c for c in new if c.size], item, patients)
    for c in candidates:
        settle(c, item, ledger, patients)
    ledger.write()
    item.result = ledger.summary()
    if item.result[Outcome.IMPORTED]:
        record(item.job.created_by, "images.imported", item.job, batch=item.number,
               images=item.result[Outcome.IMPORTED])


def filed_by(image: ImportedImage, item: ImportItem, path: Path) -> bool:
    """True for an image this very batch filed from this very file (seen again when the batch re-runs)."""
    return image.item_id == item.pk and image.source_path == str(path)


def stop_if_asked(ctx) -> None:
    if ctx.should_stop():
        raise ItemCanceled()


def skip_known_files(item: ImportItem, ledger: Ledger) -> list[tuple[Path, os.stat_result]]:
    """Decide unchanged files from what is known about them; return the others with their stat."""
    known = {k.path: k for k in KnownFile.objects.filter(path__in=item.files).select_related("image")}
    fresh = []
    for name in item.files:
        path = Path(name)
        try:
            stat = path.stat()
        except OSError as exc:
            ledger.add(path, Outcome.FAILED, reason=f"cannot read the file: {exc.strerror or exc}")
            continue
        seen = known.get(name)
        if seen and seen.unchanged(stat) and (seen.failure or seen.image_id):
            if seen.failure:
                ledger.add(path, Outcome.FAILED, reason=seen.failure)
            else:
                ours = filed_by(seen.image, item, path)
                ledger.add(path, Outcome.IMPORTED if ours else Outcome.DUPLICATE, patient_id=seen.patient_id)
            continue
        fresh.append((path, stat))
    return fresh


def read_headers(fresh, ledger: Ledger) -> list[Candidate]:
    candidates = []
    for path, stat in fresh:
        try:
            header = read_header(path)
        except HeaderError as exc:
            ledger.add(path, Outcome.FAILED, reason=str(exc), stat=stat, remember=True)
            continue
        patient_id, note = header.patient_id, ""
        if not patient_id:
            patient_id = path.parent.name[:64]
            note = f"no PatientID in the header: filed under the folder name {patient_id!r}"
        candidates.append(Candidate(path, stat, header, patient_id, note))
    return candidates


def match_existing(candidates: list[Candidate], item: ImportItem, ledger: Ledger,
                   patients: dict[str, ImportedPatient]) -> list[Candidate]:
    """Attach already-filed images by either key; return the candidates that are new."""
    uids = {c.header.sop_instance_uid for c in candidates}
    by_uid = {i.sop_instance_uid: i for i in ImportedImage.objects.filter(sop_instance_uid__in=uids)}
    by_key = {(i.patient.patient_id, i.original_filename): i for i in ImportedImage.objects.filter(
        patient__in=list(patients.values()), original_filename__in={c.path.name for c in candidates}
    ).select_related("patient")}
    first_by_uid, first_by_key, new = {}, {}, []
    for c in candidates:
        c.image = by_uid.get(c.header.sop_instance_uid) or by_key.get(c.key)
        if c.image is not None:
            if filed_by(c.image, item, c.path) and not c.image.jpg_path().exists():
                new.append(c)  # filed by this batch before a crash cut it short: finish its JPEG
            continue
        c.same_as = first_by_uid.get(c.header.sop_instance_uid) or first_by_key.get(c.key)
        if c.same_as is None:
            first_by_uid[c.header.sop_instance_uid] = first_by_key[c.key] = c
            new.append(c)
    return new


def render(new: list[Candidate], ledger: Ledger, patients) -> None:
    root = jpg_root()
    for c in new:
        final = root / jpg_name(c.header.sop_instance_uid)
        c.tmp = final.with_name(f"{final.name}.{secrets.token_hex(4)}.tmp")
    results = render_all([(str(c.path), str(c.tmp)) for c in new])
    for c, result in zip(new, results):
        if isinstance(result, str):
            c.tmp.unlink(missing_ok=True)
            c.failure = result
        else:
            c.size = result


def file_images(rendered: list[Candidate], item: ImportItem, patients) -> None:
    """Insert the new images (one statement; one by one only if another import got there first), then
    move each winner's JPEG into place and drop the losers'."""
    todo = [c for c in rendered if c.image is None]
    rows = [ImportedImage(patient=patients[c.patient_id], original_filename=c.path.name[:255],
                          sop_instance_uid=c.header.sop_instance_uid, study_instance_uid=c.header.study_instance_uid,
                          modality=c.header.modality, width=c.size[0], height=c.size[1], frames=c.header.frames,
                          jpg=jpg_name(c.header.sop_instance_uid), source_path=str(c.path)[:1024],
                          job=item.job, item=item) for c in todo]
    try:
        with transaction.atomic():
            ImportedImage.objects.bulk_create(rows)
        for c, row in zip(todo, rows):
            c.image = row
    except IntegrityError:
        for c, row in zip(todo, rows):
            row.pk = None
            try:
                with transaction.atomic():
                    row.save(force_insert=True)
                c.image = row
            except IntegrityError:
                c.image = (ImportedImage.objects.filter(sop_instance_uid=row.sop_instance_uid).first()
                           or ImportedImage.objects.filter(patient=row.patient,
                                                           original_filename=row.original_filename).first())
    for c in rendered:
        if c.image is not None and c.image.item_id == item.pk:
            os.replace(c.tmp, c.image.jpg_path())
        else:
            c.tmp.unlink(missing_ok=True)


def settle(c: Candidate, item: ImportItem, ledger: Ledger, patients) -> None:
    """Record the candidate's outcome once everything about it is known."""
    origin = c.same_as or c
    failure = origin.failure
    patient_id = patients[c.patient_id].pk
    if c.same_as is None and failure:
        ledger.add(c.path, Outcome.FAILED, reason=failure, stat=c.stat, remember=True)
    elif c.same_as is not None and origin.image is None:
        ledger.add(c.path, Outcome.FAILED, reason=failure or "its twin in this batch could not be imported")
    elif c.same_as is None and c.image is not None and filed_by(c.image, item, c.path):
        ledger.add(c.path, Outcome.IMPORTED, note=c.note, patient_id=patient_id, stat=c.stat, image_id=c.image.pk)
    elif (c.image or origin.image) is None:
        ledger.add(c.path, Outcome.FAILED, reason="another import filed this image and then it was deleted; "
                                                  "run the import again")
    else:
        image = c.image or origin.image
        ledger.add(c.path, Outcome.DUPLICATE, note=c.note, patient_id=patient_id, stat=c.stat, image_id=image.pk)
