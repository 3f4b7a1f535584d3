"""Sending many files (send-file / send-dir): C-STORE over as few associations as the files'
(SOP class, transfer syntax) pairs allow, each file sent as its own bytes, every status checked."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from apps.dicom import files
from apps.dicom.engines import DEFAULT, STORE_SCUS
from apps.dicom.errors import DicomError, InvalidDicomFile
from apps.dicom.outcomes import StoreOutcome
from apps.dicom.peers import LocalAE, RemoteAE
from apps.dicom.syntaxes import MAX_CONTEXTS

log = logging.getLogger(__name__)


@dataclass
class StoreReport:
    stored: list[StoreOutcome] = field(default_factory=list)  # success status
    warnings: list[StoreOutcome] = field(default_factory=list)  # stored, with a warning status (0xB000, ...)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason in words)
    invalid: list[tuple[str, str]] = field(default_factory=list)  # those of `failed` not sent: not complete DICOM

    @property
    def landed(self) -> int:
        return len(self.stored) + len(self.warnings)

    def add(self, outcome: StoreOutcome) -> None:
        if outcome.warning:
            self.warnings.append(outcome)
        elif outcome.ok:
            self.stored.append(outcome)
        else:
            self.failed.append((outcome.path or outcome.sop_instance_uid, outcome.message))

    def refuse(self, path, exc: InvalidDicomFile) -> None:
        entry = (str(path), exc.message.removeprefix(f"{path}: "))
        self.failed.append(entry)
        self.invalid.append(entry)


Listed = list[tuple[Path, files.DicomFileInfo]]


def list_files(paths: Iterable[str | Path]) -> tuple[Listed, list[tuple[Path, InvalidDicomFile]]]:
    """Every file named or under the folders named, split into (path, header) of DICOM files and
    (path, why not) of the rest. Only headers are read; completeness is proven when each file is sent."""
    listed, refused = [], []
    for path in files.iter_files(paths):
        try:
            listed.append((path, files.read_meta(path)))
        except InvalidDicomFile as exc:
            refused.append((path, exc))
    return listed, refused


def store_files(peer: RemoteAE, local: LocalAE, paths: Iterable[str | Path], *,
                on_progress: Callable[[int, int], None] | None = None, engine: str = DEFAULT) -> StoreReport:
    """C-STORE files (folders are walked) over one association per 128 (SOP class, transfer syntax)
    pairs. A file that is not complete DICOM is a failure with its reason and the rest still go.
    An association-level error (refused, aborted, timeout) is raised with `.report` holding what
    was done so far. `on_progress(done, total)` is called after each file. `engine`: "lean" (the
    socket-level SCU, wire/store_scu.py) or "pynetdicom"."""
    listed, refused = list_files(paths)
    report = StoreReport()
    total = len(listed) + len(refused)
    for done, (path, exc) in enumerate(refused, 1):
        report.refuse(path, exc)
        if on_progress:
            on_progress(done, total)
    return store_listed(peer, local, listed, report=report, engine=engine, on_progress=on_progress and (
        lambda done, _: on_progress(len(refused) + done, total)))


def store_listed(peer: RemoteAE, local: LocalAE, listed: Listed, *,
                 report: StoreReport | None = None, on_progress: Callable[[int, int], None] | None = None,
                 engine: str = DEFAULT) -> StoreReport:
    """store_files for files whose headers list_files (or files.read_meta) read already."""
    report = report or StoreReport()
    done = 0
    for batch in _batches_by_context(listed):
        pairs = sorted({(info.sop_class_uid, info.transfer_syntax_uid) for _, info in batch})
        try:
            with STORE_SCUS[engine](peer, local, pairs) as assoc:
                for path, info in batch:
                    try:
                        report.add(assoc.store_file(path, info))  # proves the file complete, then sends it
                    except InvalidDicomFile as exc:
                        report.refuse(path, exc)
                    done += 1
                    if on_progress:
                        on_progress(done, len(listed))
        except DicomError as exc:
            exc.report = report
            raise
    log.info("C-STORE to %s: %d stored, %d with warnings, %d failed", peer.label, len(report.stored),
             len(report.warnings), len(report.failed))
    return report


def _batches_by_context(readable):
    """Split files so that no association needs more than MAX_CONTEXTS presentation contexts."""
    batches: list[list] = []
    pairs_of_batch: list[set] = []
    for path, info in readable:
        pair = (info.sop_class_uid, info.transfer_syntax_uid)
        for batch, pairs in zip(batches, pairs_of_batch):
            if pair in pairs or len(pairs) < MAX_CONTEXTS:
                pairs.add(pair)
                batch.append((path, info))
                break
        else:
            batches.append([(path, info)])
            pairs_of_batch.append({pair})
    return batches
