"""A delivery for a research project sends de-identified files only, whatever the mode or target, named as
the pseudonymized download layout names them (<SERVER>/<shifted date>_<pseudonym>_<modality>/<new SOP
UID>.dcm). The originals stay the retrieval's: clearing after delivery removes them, never only the copies.

To a portal or as a zip, and as files to a folder, nothing is written on this side: `plan_entries`
de-identifies each file once, in memory, to learn its name and size (what the zip's layout needs before
a byte is sent) and keeps the bytes while they fit MEMORY_BYTES; the zip stream and the copy take them
from there, or de-identify the file again as they reach it. A large original (files.LARGE_FILE_BYTES) is
de-identified as its head, its pixel data read from the original as the stream or the copy reaches it. The transform is deterministic (keyed by the
project), so a re-run or a resumed upload produces the same bytes; an original that changed meanwhile
gives another size and stops the batch (SourceChanged). To a PACS, `deidentify_entries` writes the
copies into the batch's work folder, since storing takes files."""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path

from apps.delivery.zipstream import SourceChanged
from apps.dicom.errors import InvalidDicomFile
from apps.projects.pseudonymize import CannotDeidentify, HeldBack
from apps.retrieval.layout import study_folder

MEMORY_BYTES = 256 * 1024 * 1024  # de-identified bytes kept per batch; beyond it, made again when read


@dataclass
class DeidentifiedBatch:
    entries: list[tuple[str, object]] = field(default_factory=list)  # (name in the layout, copy or source)
    originals: dict[str, Path] = field(default_factory=dict)  # name -> the retrieved file it came from
    not_sent: list[tuple[str, str]] = field(default_factory=list)  # (new SOP Instance UID, reason)


def layout_name(server: str, result) -> str:
    folder = study_folder(Path(""), server, result.study_date, result.patient_id, result.modality)
    return (folder / f"{result.sop_instance_uid}.dcm").as_posix()


class DeidentifiedSource:
    """One original's de-identified bytes, made on demand for the zip stream or a copy (`size`,
    `read_into`, `write_to`); the result of the first pass while the batch's memory allows, and always for
    a large original, whose result is its new head with the pixel data left in the original (a few
    kilobytes held, the rest read from the file block by block)."""

    def __init__(self, original: Path, size: int, pseudonymizer, result, current: dict):
        self.original, self.size, self._pseudonymizer, self._result = original, size, pseudonymizer, result
        self._current = current  # the batch's one entry made again: the stream reads it block by block

    def result(self, remember: bool = False):
        """The de-identified result; made again when it was not kept, and then, with `remember`, held in the
        batch's one slot (the zip stream reads an entry block by block; copies run in parallel and keep nothing)."""
        if self._result is not None:
            return self._result
        with self._current["lock"]:
            made = self._current.get("result") if self._current.get("source") is self else None
        if made is None:
            try:
                made = self._pseudonymizer.file(self.original)
            except (HeldBack, CannotDeidentify) as exc:
                raise SourceChanged(f"{self.original} changed after the batch was planned ({exc.reason})") from None
            if remember:
                with self._current["lock"]:
                    self._current.update(source=self, result=made)
        if made.size != self.size:
            raise SourceChanged(f"{self.original} changed after the batch was planned")
        return made

    def read_into(self, at: int, into: memoryview) -> None:
        try:
            self.result(remember=True).read_into(at, into)
        except InvalidDicomFile:
            raise SourceChanged(f"{self.original} changed after the batch was planned") from None

    def write_to(self, destination: Path) -> str:
        digest = hashlib.sha1()
        try:
            with open(destination, "wb") as out:
                for piece in self.result().chunks():
                    out.write(piece)
                    digest.update(piece)
        except InvalidDicomFile:
            raise SourceChanged(f"{self.original} changed after the batch was planned") from None
        return digest.hexdigest()


def _each(project, entries: list[tuple[str, Path]], batch: DeidentifiedBatch):
    """(new name, original, result) of each file the project lets through; the others in `not_sent`."""
    pseudonymizer = project.pseudonymizer()
    for name, path in entries:
        server = name.split("/", 1)[0] if "/" in name else "FILES"
        try:
            result = pseudonymizer.file(path)
        except HeldBack as exc:
            batch.not_sent.append((pseudonymizer.recipe.uid(Path(name).stem), f"held back: {exc.reason}"))
            continue
        except CannotDeidentify as exc:
            batch.not_sent.append((pseudonymizer.recipe.uid(Path(name).stem), f"not de-identified: {exc.reason}"))
            continue
        yield layout_name(server, result), path, result, pseudonymizer


def plan_entries(project, entries: list[tuple[str, Path]], memory: int | None = None) -> DeidentifiedBatch:
    """`entries`: (name relative to the downloads root, file), the name's first part the server. Returns
    the de-identified sources in name order; nothing is written."""
    memory = MEMORY_BYTES if memory is None else memory
    batch, sources, kept, current = DeidentifiedBatch(), {}, 0, {"lock": threading.Lock()}
    for new_name, path, result, pseudonymizer in _each(project, entries, batch):
        keep = kept + len(result.data) <= memory or result.rest is not None  # a large one: its head only
        kept += len(result.data) if keep else 0
        sources[new_name] = DeidentifiedSource(path, result.size, pseudonymizer, result if keep else None, current)
        batch.originals[new_name] = path
    batch.entries = sorted(sources.items(), key=lambda entry: entry[0])
    return batch


def deidentify_entries(project, entries: list[tuple[str, Path]], work: Path) -> DeidentifiedBatch:
    """As plan_entries, the copies written under `work` (emptied first by the caller): for storing."""
    batch = DeidentifiedBatch()
    for new_name, path, result, _ in _each(project, entries, batch):
        target = work / new_name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            result.save(target)
        except InvalidDicomFile:
            batch.not_sent.append((result.sop_instance_uid, "not de-identified: the original changed meanwhile"))
            continue
        batch.originals[new_name] = path
    batch.entries = sorted((name, work / name) for name in batch.originals)
    return batch


def entry_size(source) -> int:
    return source.size if isinstance(source, DeidentifiedSource) else Path(source).stat().st_size
