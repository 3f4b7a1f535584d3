"""One batch of a send job, end to end: check every file (skipped with its reason when it is not
complete DICOM, has vanished, or leads outside the job's root), rewrite the patient into a private
work folder (inbox runs; the source files are never modified), then C-STORE (or STOW-RS) the batch
to every destination. The item fails, naming what went wrong, unless every destination confirmed
every file; destinations that already confirmed all of it are skipped when the item runs again."""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from apps.audit import record
from apps.dicom import files, paths
from apps.dicom.errors import DicomError, InvalidDicomFile
from apps.dicom.rewrite import Patient, rewrite_patient
from apps.jobs.errors import ItemCanceled, ItemFailed
from apps.sending.pseudonymize import deidentify_all, file_label, neutral
from apps.servers import storing

HEARTBEAT_EVERY = 1.0  # seconds between progress writes while a batch is being sent


@dataclass
class Sendable:
    relative: str  # as the report names it
    path: Path  # what is sent (the source file, or its rewritten copy)
    info: files.DicomFileInfo


def send_batch(item, ctx) -> None:
    job = item.job
    result = item.result
    result.setdefault("destinations", {})
    sendable, skipped = check_files(job, item.paths)
    if job.project_id:  # a project's report names no path: a path may name the patient
        places = {(rel or Path(job.source_path).name): n for n, rel in enumerate(item.paths)}
        skipped = [[file_label(item.batch, places.get(name, 0)), neutral(reason, name, job.source_path)]
                   for name, reason in skipped]
        for entry in sendable:
            entry.relative = file_label(item.batch, places[entry.relative])
    # files an earlier run found incomplete while sending stay reported (destinations done then are not re-run)
    names = {name for name, _ in skipped} | {s.relative for s in sendable}
    skipped += [entry for entry in result.get("skipped", []) if entry[0] not in names]
    work = None
    try:
        if job.project_id:
            work = Path(settings.DATA_DIR) / "sending" / "work" / f"item{item.pk}"
            shutil.rmtree(work, ignore_errors=True)  # a re-run starts from a clean copy
            sendable, refused = deidentify_all(job, sendable, work, Sendable)
            skipped += refused
            job.add_log(f"batch {item.batch}: PHASE 1 de-identification for project {job.project.name}: "
                        f"{len(sendable)} files de-identified, {len(refused)} held back or refused")
        elif job.patient_id:
            work = Path(settings.DATA_DIR) / "sending" / "work" / f"item{item.pk}"
            shutil.rmtree(work, ignore_errors=True)  # a re-run starts from a clean copy
            sendable, unwritable = rewrite_all(sendable, work, Patient(job.patient_id, job.patient_name))
            skipped += unwritable
            job.add_log(f"batch {item.batch}: PHASE 1 patient rewrite: {len(sendable)} files rewritten, "
                        f"{len(skipped)} skipped")
        result["skipped"] = skipped
        unreachable: list[DicomError] = []  # the other destinations still get their copy
        for server in job.servers.order_by("name"):
            if result["destinations"].get(server.name, {}).get("done"):
                continue
            if ctx.should_stop():
                raise ItemCanceled()
            if not server.may(job.created_by, "send"):  # access withdrawn since the job was started
                raise ItemFailed(server.refusal("send"))
            outcome = result["destinations"][server.name] = {"stored": 0, "bytes": 0, "warnings": [], "failed": [],
                                                               "done": False}
            try:
                send_to(server, job.method, sendable, outcome, ctx)
            except DicomError as exc:
                unreachable.append(exc)
            finally:
                _move_incomplete_to_skipped(outcome, skipped)
                job.add_log(f"batch {item.batch}: PHASE 2 {job.method} to {server.name}: {outcome['stored']} stored, "
                            f"{len(outcome['warnings'])} with warnings, {len(outcome['failed'])} failed")
                record(job.created_by or "inbox-watcher", "instances.sent", f"server:{server.name}", job=job.pk,
                       batch=item.batch, stored=outcome["stored"], failed=len(outcome["failed"]))
    finally:
        count(item)
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    if unreachable:
        first = unreachable[0]  # the runner retries it when a retry may help; done destinations are skipped
        first.message = "; ".join(str(exc) for exc in unreachable)
        raise first
    failed = {name: d for name, d in result["destinations"].items() if d["failed"]}
    if failed:
        raise ItemFailed("; ".join(f"{len(d['failed'])} of {len(sendable)} files not stored on {name} "
                                   f"(first: {d['failed'][0][0]}: {d['failed'][0][1]})" for name, d in failed.items()))


def check_files(job, relative_paths) -> tuple[list[Sendable], list[list[str]]]:
    root = Path(job.root)
    sendable, skipped = [], []
    for relative, path in zip(relative_paths, job.files_on_disk(relative_paths)):
        name = relative or path.name
        if not os.path.lexists(path):
            skipped.append([name, "no longer there (moved or deleted while the job waited)"])
            continue
        try:  # the tree may have changed since the job was started: confined again, opened without blocking
            resolved = paths.confine(path, [root], what="file", roots_name="the allowed folder", must_exist=True)
            sendable.append(Sendable(name, resolved, files.read_meta(resolved)))  # completeness: when sent
        except paths.PathRefused as exc:
            skipped.append([name, f"{exc} Not read."])
        except InvalidDicomFile as exc:
            skipped.append([name, exc.message.removeprefix(f"{resolved}: ")])
    return sendable, skipped


def _move_incomplete_to_skipped(outcome: dict, skipped: list[list[str]]) -> None:
    """Files found incomplete when they were about to be sent were never sent: skipped (once), not failed."""
    incomplete = outcome.pop("incomplete", [])
    known = {name for name, _ in skipped}
    skipped += [entry for entry in incomplete if entry[0] not in known]
    names = {name for name, _ in incomplete}
    outcome["failed"] = [entry for entry in outcome["failed"] if entry[0] not in names]


def rewrite_all(sendable: list[Sendable], work: Path, patient: Patient) -> tuple[list[Sendable], list[list[str]]]:
    rewritten, skipped = [], []
    for index, entry in enumerate(sendable):
        target = work / f"{index:06d}.dcm"
        try:
            rewrite_patient(entry.path, target, patient)
            rewritten.append(Sendable(entry.relative, target, files.read_meta(target)))
        except InvalidDicomFile as exc:
            skipped.append([entry.relative, exc.message.removeprefix(f"{entry.path}: ")])
    return rewritten, skipped


def send_to(server, method: str, sendable: list[Sendable], outcome: dict, ctx) -> None:
    """Send the batch to one server and fill `outcome` (stored count, warnings and failures by file).
    An association-level error fails every file that did not land, then propagates for the runner."""
    by_path = {str(s.path): s.relative for s in sendable}
    landed: set[str] = set()
    last_beat = [time.monotonic()]

    def progress(done: int, total: int) -> None:
        if time.monotonic() - last_beat[0] >= HEARTBEAT_EVERY:
            last_beat[0] = time.monotonic()
            ctx.heartbeat(sending={"server": server.name, "done": done, "total": total})

    try:
        if sendable:
            report = storing.store(server, [(s.path, s.info) for s in sendable], method=method,
                                   slot=ctx.association_slot(server), on_progress=progress)
            _take_store_report(report, by_path, landed, outcome)
    except DicomError as exc:
        report = getattr(exc, "report", None)
        if report is not None:
            _take_store_report(report, by_path, landed, outcome)
        reported = {name for name, _ in outcome["failed"]}
        outcome["failed"] += [[s.relative, str(exc)] for s in sendable if s.relative not in landed | reported]
        _tally(outcome, sendable, landed)
        raise
    _tally(outcome, sendable, landed)
    incomplete = {name for name, _ in outcome.get("incomplete", [])}
    outcome["done"] = all(name in incomplete for name, _ in outcome["failed"])


def _tally(outcome: dict, sendable: list[Sendable], landed: set) -> None:
    outcome["stored"] = len(landed)
    outcome["bytes"] = sum(s.info.size for s in sendable if s.relative in landed)


def _take_store_report(report, by_path: dict, landed: set, outcome: dict) -> None:
    """A file the server named by a UID we did not send stays named by that UID."""
    landed |= {by_path.get(o.path, o.path) for o in report.stored + report.warnings}
    outcome["warnings"] = [[by_path.get(o.path, o.path), o.message] for o in report.warnings]
    outcome["failed"] = [[by_path.get(path, path), reason] for path, reason in report.failed]
    outcome["incomplete"] = [[by_path.get(path, path), reason] for path, reason in report.invalid]


def count(item) -> None:
    """The item's counters from its result, saved at once (the runner saves status and result later)."""
    destinations = [item.result["destinations"].get(s.name) for s in item.job.servers.all()]
    item.files = len(item.paths)
    item.skipped = len(item.result.get("skipped", []))
    item.sent = min((d["stored"] if d else 0 for d in destinations), default=0)
    item.warnings = sum(len(d["warnings"]) for d in destinations if d)
    item.not_stored = sum(len(d["failed"]) for d in destinations if d)
    item.bytes = sum(d.get("bytes", 0) for d in destinations if d)
    item.save(update_fields=["files", "skipped", "sent", "warnings", "not_stored", "bytes", "result"])
