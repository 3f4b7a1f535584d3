"""One batch of an import: decide for each file whether it is new, a duplicate or a failure, and file
the new ones with their JPEG.

An unchanged file (same path, size and mtime as a file already looked at) is decided without opening
it. Every other file is read once, in the process pool, which takes its header and writes its JPEG in
the same pass (reading the header first in this process would cost a second parse of every new file).
Results come back in groups of FILING_GROUP, and this process checks the dedup keys and files each group
while the pool decodes the next ones, so the database work hides behind decoding. Filing rides on the
unique keys, so two imports racing for one image end with one row and one duplicate. Re-running a
batch (after a crash) recognises the images it filed itself as its own."""
from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from django.db import IntegrityError, transaction

from apps.audit import record
from apps.catalog.filing import catalog_files
from apps.dicom.header import ImageHeader
from apps.imports.models import FileOutcome, ImportedImage, ImportedPatient, ImportItem, KnownFile, jpg_root
from apps.imports.patients import disagreement, ensure_patients
from apps.imports.pool import render_stream
from apps.jobs.errors import ItemCanceled
from apps.jobs.rows import field_values, insert_rows

Outcome = FileOutcome.Outcome
FILING_GROUP = 50  # files filed together: few queries per file, and the pool never waits long for this process


@dataclass
class Candidate:
    """A file read and rendered, waiting for the dedup verdict."""

    path: Path
    stat: os.stat_result
    header: ImageHeader
    patient_id: str
    size: tuple[int, int]
    tmp: Path
    entry: dict | None = None  # the catalog's, when the pool read it (catalog_entry.read_entry's values)
    note: str = ""
    image: ImportedImage | None = None
    same_as: "Candidate | None" = None  # an earlier file of this group with one of the same keys
    placed: bool = False  # its temporary JPEG was moved into place (nothing left to remove)

    @property
    def key(self) -> tuple[str, str]:
        return self.patient_id, self.path.name


def incoming_dir() -> Path:
    """Where the pool writes JPEGs before their image is filed (same file system: a rename moves them)."""
    return jpg_root() / "incoming"


def sweep_incoming(older_than_seconds: float = 3600) -> None:
    """Drop temporary JPEGs a killed worker left behind."""
    cutoff = time.time() - older_than_seconds
    for tmp in incoming_dir().glob("*.jpg"):
        try:
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()
        except OSError:
            pass


def jpg_name(sop_instance_uid: str) -> str:
    """Relative JPEG path: fanned out over 256 folders so no folder holds millions of files."""
    return f"{hashlib.sha1(sop_instance_uid.encode()).hexdigest()[:2]}/{sop_instance_uid}.jpg"


@dataclass
class Ledger:
    """The item's outcomes, stored at each write(): a row per file read and per failed file, a count
    per patient and outcome for the unchanged files."""

    item: ImportItem
    outcomes: list[dict] = field(default_factory=list)  # FileOutcome rows (apps/jobs/rows.py)
    unchanged: Counter = field(default_factory=Counter)  # (outcome, patient pk) -> files
    known: dict[str, dict] = field(default_factory=dict)  # KnownFile rows by path
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(Outcome.values, 0))

    def __post_init__(self):
        self.source_prefix = self.item.job.source_path.rstrip("/") + "/"
        FileOutcome.objects.filter(item=self.item).delete()  # a re-run (after a crash) starts over

    def relative(self, path: Path) -> str:
        text = str(path)
        return text[len(self.source_prefix):] if text.startswith(self.source_prefix) else text

    def add(self, path: Path | str, outcome: str, *, reason: str = "", note: str = "", patient_id=None,
            stat=None, image_id=None, remember: bool = False):
        self.counts[outcome] += 1
        self.outcomes.append({"job_id": self.item.job_id, "item_id": self.item.pk, "path": self.relative(path)[:1024],
                              "outcome": outcome, "reason": reason[:500], "note": note[:500],
                              "patient_id": patient_id})
        if stat is not None and (remember or image_id):
            self.known[str(path)] = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                                     "image_id": image_id, "patient_id": patient_id, "failure": reason[:500]}

    def add_unchanged(self, outcome: str, patient_id) -> None:
        """An unchanged file the scan decided without opening it: counted, not listed."""
        self.counts[outcome] += 1
        self.unchanged[outcome, patient_id] += 1

    def write(self):
        """Store what was added since the last write."""
        self.outcomes += [{"job_id": self.item.job_id, "item_id": self.item.pk, "path": "", "outcome": outcome,
                           "patient_id": patient_id, "files": files}
                          for (outcome, patient_id), files in self.unchanged.items()]
        with transaction.atomic():  # one statement run per row (apps/jobs/rows.py), not bulk_create's models
            insert_rows(FileOutcome, self.outcomes)
            insert_rows(KnownFile, self.known.values(), unique_fields=("path",),
                        update_fields=("size", "mtime_ns", "image", "patient", "failure"))
        self.outcomes, self.unchanged, self.known = [], Counter(), {}


def import_batch(item: ImportItem, ctx) -> None:
    ledger = Ledger(item)
    fresh = skip_known_files(item.files, item, ledger)  # the scan decided most; a re-run or a race the rest
    ledger.write()
    stop_if_asked(ctx)
    started, filing = time.monotonic(), 0.0
    groups = decoded_groups(fresh)
    try:
        for group in groups:
            group_started = time.monotonic()
            file_group(group, item, ledger)
            ledger.write()
            filing += time.monotonic() - group_started
    except BaseException:
        for group in groups:  # the pool still writes the rest: leave no temporary JPEG behind
            for _, _, tmp, _ in group:
                tmp.unlink(missing_ok=True)
        raise
    item.result = {**ledger.counts, "seconds": round(time.monotonic() - started, 3),
                   "filing_seconds": round(filing, 3)}
    ctx.log.info("batch %d: %d imported, %d duplicate, %d failed in %.2f s (filing %.2f s)", item.number,
                 *(ledger.counts[o] for o in (Outcome.IMPORTED, Outcome.DUPLICATE, Outcome.FAILED)),
                 item.result["seconds"], filing)
    if ledger.counts[Outcome.IMPORTED]:
        record(item.job.created_by, "images.imported", item.job, batch=item.number,
               images=ledger.counts[Outcome.IMPORTED])


def file_group(group, item: ImportItem, ledger: Ledger) -> None:
    """Dedup and file one group of decoded files; every temporary JPEG is gone afterwards."""
    candidates = candidates_of(group, ledger)
    try:
        if not candidates:
            return
        patients = ensure_patients({c.patient_id: c.header for c in reversed(candidates)}, item.job)
        for c in candidates:
            c.note = "; ".join(filter(None, [c.note, disagreement(patients[c.patient_id], c.header)]))
        file_images(match_existing(candidates, patients), item, patients)
        place_jpegs(candidates, item)
        for c in candidates:
            settle(c, item, ledger, patients)
    finally:
        for c in candidates:
            if not c.placed:  # (an unlink of a moved file failed: a lookup and an exception per image)
                c.tmp.unlink(missing_ok=True)


def filed_by(image: ImportedImage, item: ImportItem, path: Path) -> bool:
    """True for an image this very batch filed from this very file (seen again when the batch re-runs)."""
    return image.item_id == item.pk and image.source_path == str(path)


def stop_if_asked(ctx) -> None:
    if ctx.should_stop():
        raise ItemCanceled()


def skip_known_files(names: list[str], item: ImportItem, ledger: Ledger) -> list[tuple[Path, os.stat_result]]:
    """Decide unchanged files from what is known about them; return the others with their stat."""
    known = {row[0]: row for row in KnownFile.objects.filter(path__in=names).values_list(
        "path", "size", "mtime_ns", "failure", "image_id", "patient_id", "image__item_id", "image__source_path")}
    fresh = []
    for name in names:
        try:
            stat = os.stat(name)
        except OSError as exc:
            ledger.add(name, Outcome.FAILED, reason=f"cannot read the file: {exc.strerror or exc}")
            continue
        seen = known.get(name)
        if seen and (seen[1], seen[2]) == (stat.st_size, stat.st_mtime_ns) and (seen[3] or seen[4]):
            _, _, _, failure, image_id, patient_id, image_item_id, image_source = seen
            if failure:
                ledger.add(name, Outcome.FAILED, reason=failure)
            else:
                ours = image_item_id == item.pk and image_source == name  # this batch, before a crash
                ledger.add_unchanged(Outcome.IMPORTED if ours else Outcome.DUPLICATE, patient_id)
            continue
        fresh.append((Path(name), stat))
    return fresh


def decoded_groups(fresh):
    """Read every file once in the pool (header + JPEG into a temporary name), yielding the results in
    groups of FILING_GROUP as they come: (path, stat, temporary JPEG, (header, size, problem, catalog entry))
    each."""
    incoming = incoming_dir()
    incoming.mkdir(parents=True, exist_ok=True)
    tmps = [incoming / f"{secrets.token_hex(8)}.jpg" for _ in fresh]
    results = render_stream([(str(path), str(tmp)) for (path, _), tmp in zip(fresh, tmps)])
    group = []
    for (path, stat), tmp, result in zip(fresh, tmps, results):
        group.append((path, stat, tmp, result))
        if len(group) == FILING_GROUP:
            yield group
            group = []
    if group:
        yield group


def candidates_of(group, ledger: Ledger) -> list[Candidate]:
    """The decoded files of a group; the ones that failed go to the ledger."""
    candidates = []
    for path, stat, tmp, (header, size, problem, entry) in group:
        if problem:
            tmp.unlink(missing_ok=True)
            ledger.add(path, Outcome.FAILED, reason=problem, stat=stat, remember=True)
            continue
        patient_id, note = header.patient_id, ""
        if not patient_id:
            patient_id = path.parent.name[:64]
            note = f"no PatientID in the header: filed under the folder name {patient_id!r}"
        candidates.append(Candidate(path, stat, header, patient_id, size, tmp, entry, note))
    return candidates


def match_existing(candidates: list[Candidate], patients: dict[str, ImportedPatient]) -> list[Candidate]:
    """Attach already-filed images (earlier groups of this batch included) by either key, and twins
    within the group; return the candidates that are new."""
    uids = {c.header.sop_instance_uid for c in candidates}
    by_uid = {i.sop_instance_uid: i for i in ImportedImage.objects.filter(sop_instance_uid__in=uids)}
    by_key = {(i.patient.patient_id, i.original_filename): i for i in ImportedImage.objects.filter(
        patient__in=list(patients.values()), original_filename__in={c.path.name for c in candidates}
    ).select_related("patient")}
    first_by_uid, first_by_key, new = {}, {}, []
    for c in candidates:
        c.image = by_uid.get(c.header.sop_instance_uid) or by_key.get(c.key)
        if c.image is not None:
            continue
        c.same_as = first_by_uid.get(c.header.sop_instance_uid) or first_by_key.get(c.key)
        if c.same_as is None:
            first_by_uid[c.header.sop_instance_uid] = first_by_key[c.key] = c
            new.append(c)
    return new


def file_images(new: list[Candidate], item: ImportItem, patients) -> None:
    """Insert the new images in one statement run (apps/jobs/rows.py), their keys read back by SOPInstanceUID;
    one by one only if another import got there first."""
    rows = [ImportedImage(patient=patients[c.patient_id], original_filename=c.path.name[:255],
                          sop_instance_uid=c.header.sop_instance_uid, study_instance_uid=c.header.study_instance_uid,
                          modality=c.header.modality, width=c.size[0], height=c.size[1], frames=c.header.frames,
                          jpg=jpg_name(c.header.sop_instance_uid), source_path=str(c.path)[:1024],
                          job=item.job, item=item) for c in new]
    try:
        with transaction.atomic():
            insert_rows(ImportedImage, map(field_values, rows))
            ids = dict(ImportedImage.objects.filter(sop_instance_uid__in=[row.sop_instance_uid for row in rows])
                       .values_list("sop_instance_uid", "pk"))
            catalog_files([c.path for c in new], source="imported", job=item.job,
                          read={str(c.path): c.entry for c in new if c.entry})
        for c, row in zip(new, rows):
            row.pk, row._state.adding, row._state.db = ids[row.sop_instance_uid], False, ImportedImage.objects.db
            c.image = row
    except IntegrityError:
        for c, row in zip(new, rows):
            row.pk = None
            try:
                with transaction.atomic():
                    row.save(force_insert=True)
                    catalog_files([c.path], source="imported", job=item.job, read={str(c.path): c.entry})
                c.image = row
            except IntegrityError:
                c.image = (ImportedImage.objects.filter(sop_instance_uid=row.sop_instance_uid).first()
                           or ImportedImage.objects.filter(patient=row.patient,
                                                           original_filename=row.original_filename).first())


_folders_made: set[str] = set()  # JPEG fan-out folders this process has made (a mkdir each time costs)


def place_jpegs(candidates: list[Candidate], item: ImportItem) -> None:
    """Move the JPEG of every image this batch owns into place (also one lost to a crash before)."""
    root = os.fspath(jpg_root())  # ImportedImage.jpg_path()'s, as text: pathlib cost ~10 us per image here
    for c in candidates:
        if c.same_as is None and c.image is not None and filed_by(c.image, item, c.path):
            target = os.path.join(root, c.image.jpg)
            folder = os.path.dirname(target)
            if folder not in _folders_made:
                os.makedirs(folder, exist_ok=True)
                _folders_made.add(folder)
            try:
                os.replace(c.tmp, target)
            except FileNotFoundError:  # the folder went away under us (emptied by hand): make it again
                os.makedirs(folder, exist_ok=True)
                os.replace(c.tmp, target)
            c.placed = True


def settle(c: Candidate, item: ImportItem, ledger: Ledger, patients) -> None:
    """Record the candidate's outcome once everything about it is known."""
    patient_id = patients[c.patient_id].pk
    image = c.image or (c.same_as.image if c.same_as else None)
    if image is None:
        ledger.add(c.path, Outcome.FAILED, reason="another import filed this image and then it was deleted; "
                                                  "run the import again")
    elif c.same_as is None and filed_by(image, item, c.path):
        ledger.add(c.path, Outcome.IMPORTED, note=c.note, patient_id=patient_id, stat=c.stat, image_id=image.pk)
    else:
        ledger.add(c.path, Outcome.DUPLICATE, note=c.note, patient_id=patient_id, stat=c.stat, image_id=image.pk)
