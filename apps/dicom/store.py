"""Sending many files (send-file / send-dir): C-STORE over as few associations as the files'
(SOP class, transfer syntax) pairs allow, each file sent as its own bytes, every status checked."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from apps.dicom import files
from apps.dicom.syntaxes import MAX_CONTEXTS
from apps.dicom.dimse import StoreOutcome, associate
from apps.dicom.errors import DicomError, InvalidDicomFile
from apps.dicom.peers import LocalAE, RemoteAE

log = logging.getLogger(__name__)


@dataclass
class StoreReport:
    stored: list[StoreOutcome] = field(default_factory=list)  # success status
    warnings: list[StoreOutcome] = field(default_factory=list)  # stored, with a warning status (0xB000, ...)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason in words)

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


def store_files(peer: RemoteAE, local: LocalAE, paths: Iterable[str | Path], *,
                on_progress: Callable[[int, int], None] | None = None) -> StoreReport:
    """C-STORE files (folders are walked) over one association per 128 (SOP class, transfer syntax)
    pairs. A file that is not complete DICOM is a failure with its reason and the rest still go.
    An association-level error (refused, aborted, timeout) is raised with `.report` holding what
    was done so far. `on_progress(done, total)` is called after each file."""
    report = StoreReport()
    candidates = files.iter_files(paths)
    total, done = len(candidates), 0

    def progress():
        nonlocal done
        done += 1
        if on_progress:
            on_progress(done, total)

    readable: list[tuple[Path, files.DicomFileInfo]] = []
    for path in candidates:
        try:
            readable.append((path, files.read_meta(path)))
        except InvalidDicomFile as exc:
            report.failed.append((str(path), exc.message.removeprefix(f"{path}: ")))
            progress()
    for batch in _batches_by_context(readable):
        pairs = sorted({(info.sop_class_uid, info.transfer_syntax_uid) for _, info in batch})
        try:
            with associate(peer, local, purpose="store", contexts=pairs) as assoc:
                for path, _ in batch:
                    try:
                        info = files.inspect(path)  # complete? (read_meta above only read the header)
                    except InvalidDicomFile as exc:
                        report.failed.append((str(path), exc.message.removeprefix(f"{path}: ")))
                    else:
                        report.add(assoc._send(str(path), path, info, exact=True))
                    progress()
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
