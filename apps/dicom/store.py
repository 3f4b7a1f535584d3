"""Storing instances on a server, the one way every sender does it (through apps/servers/storing.py):
C-STORE over as few associations as the files' (SOP class, transfer syntax) pairs allow, each file sent
as its own bytes, every status checked; or STOW-RS (apps/dicom/dicomweb.py). Both answer with one
StoreReport naming each file and what became of it."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from apps.dicom import dicomweb, files
from apps.dicom.errors import DicomError, DicomWebError, InvalidDicomFile
from apps.dicom.outcomes import StoreOutcome
from apps.dicom.peers import DicomWebEndpoint, LocalAE, RemoteAE
from apps.dicom.scu import store_association
from apps.dicom.syntaxes import MAX_CONTEXTS

log = logging.getLogger(__name__)


@dataclass
class StoreReport:
    stored: list[StoreOutcome] = field(default_factory=list)  # success status
    warnings: list[StoreOutcome] = field(default_factory=list)  # stored, with a warning status (0xB000, ...)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, or the UID of one not ours; reason)
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
Source = str | Path | tuple[Path, files.DicomFileInfo]  # a file, or a file with the header read already


def store(target: RemoteAE | DicomWebEndpoint, sources: Iterable[Source], *, local: LocalAE | None = None,
          on_progress: Callable[[int, int], None] | None = None, stow_batch: int = 20) -> StoreReport:
    """Store files on `target`: C-STORE to a RemoteAE (as `local`), STOW-RS to a DicomWebEndpoint,
    `stow_batch` instances per request. A file that is not complete DICOM is a failure with its reason
    (also in `invalid`) and the rest still go. An error that ends the exchange (association refused,
    aborted, timeout; HTTP failure) is raised with `.report` holding what was done so far.
    `on_progress(done, total)` is called after each file (C-STORE) or request (STOW-RS). Folders are walked."""
    sources = [found for source in sources
               for found in ([source] if isinstance(source, tuple) else files.iter_files([source]))]
    if isinstance(target, DicomWebEndpoint):
        return _stow(target, sources, on_progress, stow_batch)
    if local is None:
        raise ValueError("C-STORE needs our own AE (local)")
    listed = [s for s in sources if isinstance(s, tuple)]
    if len(listed) == len(sources):
        return store_listed(target, local, listed, on_progress=on_progress)
    return store_files(target, local, [s[0] if isinstance(s, tuple) else s for s in sources], on_progress=on_progress)


def _stow(endpoint: DicomWebEndpoint, paths: list[Source], on_progress, batch_size: int) -> StoreReport:
    try:
        answer = dicomweb.stow(endpoint, paths, batch_size=batch_size,
                               on_progress=on_progress and (lambda done: on_progress(done, len(paths))))
    except DicomWebError as exc:
        exc.report = _from_stow(exc.result, paths)
        raise
    report = _from_stow(answer, paths)
    if on_progress:
        on_progress(len(paths), len(paths))
    return report


def _from_stow(answer: dicomweb.StowResult, paths: list) -> StoreReport:
    """The STOW-RS answer by file: the server names instances by UID, stow names a file it did not send
    (not complete DICOM) by its path."""
    report = StoreReport()
    for uid in answer.stored:
        report.add(StoreOutcome(answer.sent.get(uid, uid), uid, 0, True, False, "stored"))
    for uid, reason in answer.warnings:
        report.add(StoreOutcome(answer.sent.get(uid, uid), uid, None, True, True, reason))
    names = {files.source_name(s[0] if isinstance(s, tuple) else s) for s in paths}
    for key, reason in answer.failed:
        report.failed.append((answer.sent.get(key, key), reason))
        if key not in answer.sent and key in names:  # a file stow did not send: not complete DICOM
            report.invalid.append((key, reason))
    return report


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
                on_progress: Callable[[int, int], None] | None = None) -> StoreReport:
    """C-STORE files (folders are walked) over one association per 128 (SOP class, transfer syntax)
    pairs. A file that is not complete DICOM is a failure with its reason and the rest still go.
    An association-level error (refused, aborted, timeout) is raised with `.report` holding what
    was done so far. `on_progress(done, total)` is called after each file."""
    listed, refused = list_files(paths)
    report = StoreReport()
    total = len(listed) + len(refused)
    for done, (path, exc) in enumerate(refused, 1):
        report.refuse(path, exc)
        if on_progress:
            on_progress(done, total)
    return store_listed(peer, local, listed, report=report, on_progress=on_progress and (
        lambda done, _: on_progress(len(refused) + done, total)))


def store_listed(peer: RemoteAE, local: LocalAE, listed: Listed, *,
                 report: StoreReport | None = None, on_progress: Callable[[int, int], None] | None = None
                 ) -> StoreReport:
    """store_files for files whose headers list_files (or files.read_meta) read already."""
    report = report or StoreReport()
    done = 0
    for batch in _batches_by_context(listed):
        pairs = sorted({(info.sop_class_uid, info.transfer_syntax_uid) for _, info in batch})
        try:
            with store_association(peer, local, pairs) as assoc:
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
