"""The inbox watcher: finds ready folders in every enabled inbox and hands each to the job runner.

A top-level folder is ready when its content (every file's and folder's path, size and mtime, any
depth) has not changed for the inbox's debounce time, as observed by this process: a folder copied
with old timestamps, or one that arrived while the watcher was down, still waits one full debounce.
inotify (through watchdog) tells which folders changed, so quiet ones are not re-read; every
RESCAN_SECONDS (and always, in polling mode, for network shares where inotify sees nothing) every
folder is re-read. The run remembers the content it saw: the same folder is never sent twice, and a
run that failed waits for a retry instead of failing again every debounce period.

Inboxes are re-read from the database on every pass, so changes made in the admin apply at once.
Folder names carry patient data: they go to the database (the inbox's report), never to the log."""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.db import close_old_connections
from django.utils import timezone

from apps.jobs.models import JobStatus
from apps.sending.intake import start_inbox_run
from apps.sending.models import Inbox, SendJob
from apps.sending.patterns import PatternError, compile_pattern, patient_of
from apps.sending.roots import OutsideRoots, confined
from apps.sending.settle import settle

log = logging.getLogger("apps.sending.watcher")
RESCAN_SECONDS = 60.0  # with inotify, re-read every folder this often anyway (missed events, NFS)
SETTLE_EVERY_SECONDS = 30.0  # finish archives that a crash interrupted
ACTIVE = (JobStatus.PENDING, JobStatus.RUNNING)


def fingerprint(folder: Path) -> str:
    """A digest of every entry under `folder`: relative path, size and modification time."""
    digest = hashlib.sha1()
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names) + dirs:
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue  # vanished between listing and stat: the next pass sees the change
            digest.update(f"{os.path.relpath(path, folder)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8",
                                                                                                   "surrogateescape"))
    return digest.hexdigest()


@dataclass
class Seen:
    fingerprint: str
    since: float  # when this content was first seen (monotonic clock)


class InboxWatcher:
    def __init__(self, *, mode: str = "auto", clock=time.monotonic):
        self.clock = clock
        self.seen: dict[tuple[int, str], Seen] = {}
        self.wake = threading.Event()  # set to end run_forever's wait early (stop)
        self._dirty: set[tuple[str, str]] = set()  # (inbox path, top-level folder) touched by events
        self._lock = threading.Lock()
        self._observer = None
        self._watches: dict[int, tuple[str, object]] = {}
        self._last_rescan = self._last_settle = float("-inf")
        self._warned: set[tuple[int, str]] = set()
        self.mode = self._start_observer() if mode in ("auto", "inotify") else "polling"

    # --- inotify -------------------------------------------------------------------------------
    def _start_observer(self) -> str:
        try:
            from watchdog.observers.inotify import InotifyObserver

            self._observer = InotifyObserver()
            self._observer.start()
            return "inotify"
        except Exception as exc:  # no inotify here (or no watches left): polling still finds everything
            log.warning("inotify unavailable (%s); polling inboxes instead", type(exc).__name__)
            self._observer = None
            return "polling"

    def _on_event(self, inbox_path: str, event) -> None:
        for changed in (event.src_path, getattr(event, "dest_path", "") or ""):
            relative = os.path.relpath(changed, inbox_path) if changed else ".."
            if not relative.startswith(".."):
                with self._lock:
                    self._dirty.add((inbox_path, relative.split(os.sep)[0]))

    def _sync_watches(self, inboxes) -> None:
        if self._observer is None:
            return
        from watchdog.events import FileSystemEventHandler

        wanted = {inbox.pk: inbox.path for inbox in inboxes if Path(inbox.path).is_dir()}
        for pk, (path, watch) in list(self._watches.items()):
            if wanted.get(pk) != path:
                self._observer.unschedule(watch)
                del self._watches[pk]
        for pk, path in wanted.items():
            if pk not in self._watches:
                handler = FileSystemEventHandler()
                handler.on_any_event = lambda event, path=path: self._on_event(path, event)
                try:
                    self._watches[pk] = (path, self._observer.schedule(handler, path, recursive=True))
                except OSError as exc:
                    log.warning("inbox id=%s: cannot watch its folder with inotify (%s); it is polled", pk,
                                exc.strerror or exc)

    def stop(self) -> None:
        self.wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)

    # --- scanning ------------------------------------------------------------------------------
    def scan_once(self) -> list[SendJob]:
        """One pass over every enabled inbox; returns the runs it started."""
        inboxes = list(Inbox.objects.filter(enabled=True).prefetch_related("destinations"))
        self._sync_watches(inboxes)
        now = self.clock()
        full = self.mode == "polling" or now - self._last_rescan >= RESCAN_SECONDS
        if full:
            self._last_rescan = now
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        started = []
        for inbox in inboxes:
            started += self._scan_inbox(inbox, now, full, dirty)
        if now - self._last_settle >= SETTLE_EVERY_SECONDS:
            self._last_settle = now
            self.settle_finished()
        return started

    def _warn_once(self, inbox: Inbox, problem: str) -> None:
        if (inbox.pk, problem) not in self._warned:
            self._warned.add((inbox.pk, problem))
            log.warning("inbox %s: %s", inbox.name, problem)

    def _scan_inbox(self, inbox: Inbox, now: float, full: bool, dirty: set) -> list[SendJob]:
        try:
            path = confined(inbox.path, what="inbox path")
        except OutsideRoots as exc:
            self._warn_once(inbox, str(exc))
            return []
        if not path.is_dir():
            self._warn_once(inbox, "its folder does not exist")
            return []
        if not inbox.destinations.all():
            self._warn_once(inbox, "it has no destinations; nothing is sent")
            return []
        try:
            compile_pattern(inbox.pattern)
        except PatternError as exc:  # saved before patterns were checked: nothing can be matched
            self._warn_once(inbox, str(exc))
            return []
        folders = sorted((e for e in os.scandir(path) if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")),
                         key=lambda e: e.name)
        self._forget_unmatched(inbox, {e.name for e in folders})
        started = []
        for entry in folders:
            try:
                patient = patient_of(entry.name, inbox.pattern)
            except ValueError as exc:
                self._report_unmatched(inbox, entry.name, str(exc))
                continue
            key = (inbox.pk, entry.name)
            seen = self.seen.get(key)
            if seen is None or full or (inbox.path, entry.name) in dirty:
                content = fingerprint(Path(entry.path))
                if seen is None or seen.fingerprint != content:
                    self.seen[key] = Seen(content, now)
                    continue
            if now - seen.since < inbox.debounce_seconds:
                continue
            runs = SendJob.objects.filter(inbox=inbox, folder=entry.name)
            if runs.filter(status__in=ACTIVE).exists() or runs.filter(fingerprint=seen.fingerprint).exists():
                continue  # being sent, or sent/failed with exactly this content (a failed run waits for retry)
            job = start_inbox_run(inbox, Path(entry.path), patient, seen.fingerprint)
            log.info("inbox %s: folder ready, run %s started", inbox.name, job.pk)
            started.append(job)
        return started

    def _report_unmatched(self, inbox: Inbox, folder: str, reason: str) -> None:
        if any(entry["folder"] == folder for entry in inbox.unmatched):
            return
        inbox.unmatched = [*inbox.unmatched, {"folder": folder, "reason": reason,
                                              "seen_at": timezone.now().isoformat(timespec="seconds")}]
        Inbox.objects.filter(pk=inbox.pk).update(unmatched=inbox.unmatched)
        log.warning("inbox %s: a folder does not match the name pattern; left alone (listed on the inbox)",
                    inbox.name)

    def _forget_unmatched(self, inbox: Inbox, present: set[str]) -> None:
        kept = [entry for entry in inbox.unmatched if entry["folder"] in present]
        if len(kept) != len(inbox.unmatched):
            inbox.unmatched = kept
            Inbox.objects.filter(pk=inbox.pk).update(unmatched=kept)

    def settle_finished(self, *, within: timedelta = timedelta(days=1)) -> None:
        """Finish moves a crash interrupted: succeeded runs whose folder is still in the inbox."""
        recent = SendJob.objects.filter(inbox__isnull=False, status=JobStatus.SUCCEEDED,
                                        completed_at__gte=timezone.now() - within).exclude(folder="")
        for job in recent.select_related("inbox"):
            if Path(job.source_path).exists():
                settle(job)

    def run_forever(self, poll_seconds: float) -> None:
        """Scan every `poll_seconds` until stop()."""
        while not self.wake.is_set():
            close_old_connections()  # a long-lived process: drop connections the database closed
            try:
                self.scan_once()
            except Exception:
                log.exception("inbox scan failed; trying again in %.0f s", poll_seconds)
            self.wake.wait(poll_seconds)
