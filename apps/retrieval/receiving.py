"""What the receiver (`manage.py receive`) keeps: C-STOREs from the AE title of a configured server (or of
RECEIVER_ALLOWED_AE_TITLES), carrying our AE title and the live move key of a C-MOVE that was sent to that
very PACS. Everything else is refused: an unknown peer's association is rejected, an instance outside any
move in flight gets a "not authorized" status and is never written (unless RECEIVER_KEEP_UNSOLICITED_MB
allows keeping plain C-STOREs, then within that quota and for RECEIVER_UNSOLICITED_DAYS).
An instance of a live move is answered once checked and noted in its move's ledger, and written right
after the answer (staging.AnsweredWrites says why nothing can be lost that way); a plain C-STORE is
answered only once written."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

from apps.dicom.staging import AnsweredWrites, MoveStaging
from apps.dicom.wire.received import InstanceRefused, ReceivedInstance
from apps.retrieval.arrivals import arrival_folder, foreign_reason
from apps.retrieval.models import MoveKey
from apps.servers.models import DicomServer

log = logging.getLogger("apps.retrieval.receive")
NOT_AUTHORIZED = 0x0124  # "Refused: Not authorized", a general DIMSE status (PS3.7 annex C)
REFRESH_SECONDS = 5.0


class ReceiverPolicy:
    """Thread-safe; asked from every association thread. The database is read on a cache miss only, and
    the connection closed after it, so the SCP's many short-lived threads never pile up connections."""

    def __init__(self, local_ae_title: str):
        self.local_ae_title = local_ae_title
        self._lock = threading.Lock()
        self._allowed: set[str] = set()
        self._allowed_at = 0.0
        self._keys: dict[int, tuple[tuple[str, str, str], float]] = {}  # message id -> (MoveKey.live, cached until)

    def _query(self, fn):
        try:
            return fn()
        finally:
            connection.close()  # this thread's own connection

    def calling_ae_allowed(self, calling_ae: str) -> bool:
        with self._lock:
            fresh = time.monotonic() - self._allowed_at < REFRESH_SECONDS
            if fresh and calling_ae in self._allowed:
                return True
        allowed = set(self._query(lambda: list(DicomServer.objects.values_list("ae_title", flat=True))))
        allowed |= set(settings.RECEIVER_ALLOWED_AE_TITLES)
        with self._lock:
            self._allowed, self._allowed_at = allowed, time.monotonic()
        return calling_ae in allowed

    def live_move(self, message_id: int) -> tuple[str, str, str] | None:
        """(PACS AE title, study, series or "") of a live move key (cached for a few seconds once seen)."""
        with self._lock:
            cached = self._keys.get(message_id)
            if cached and cached[1] > time.monotonic():
                return cached[0]
        move = self._query(lambda: MoveKey.live(message_id))
        if move is not None:
            with self._lock:
                self._keys[message_id] = (move, time.monotonic() + REFRESH_SECONDS)
        return move

    def refusal(self, instance: ReceivedInstance) -> str | None:
        """Why this instance must not be kept, or None."""
        if not self.calling_ae_allowed(instance.calling_ae):
            return f"calling AE title {instance.calling_ae!r} is not a configured server"
        if instance.move_originator_ae is None or instance.move_originator_message_id is None:
            return "" if settings.RECEIVER_KEEP_UNSOLICITED_MB > 0 else "not part of a retrieval (no move originator)"
        if instance.move_originator_ae != self.local_ae_title:
            return f"moved for another AE title ({instance.move_originator_ae!r})"
        move = self.live_move(instance.move_originator_message_id)
        if move is None:
            return f"no retrieval in flight under move {instance.move_originator_message_id}"
        if move[0] != instance.calling_ae:
            return f"move {instance.move_originator_message_id} was sent to another PACS"
        return None


class UnsolicitedQuota:
    """Plain C-STOREs (no move originator), kept only when RECEIVER_KEEP_UNSOLICITED_MB > 0: up to that many
    megabytes, each file removed after RECEIVER_UNSOLICITED_DAYS."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._lock = threading.Lock()
        self._used = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0

    def take(self, size: int) -> bool:
        with self._lock:
            if self._used + size > settings.RECEIVER_KEEP_UNSOLICITED_MB * 1_000_000:
                return False
            self._used += size
            return True

    def sweep(self) -> int:
        """Remove files older than the keep time; returns how many."""
        cutoff, removed = time.time() - settings.RECEIVER_UNSOLICITED_DAYS * 86400, 0
        for path in list(self.folder.rglob("*.dcm")) if self.folder.exists() else []:
            stat = path.stat()
            if stat.st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
                with self._lock:
                    self._used -= stat.st_size
        return removed


def staging_writer(staging: MoveStaging, policy: ReceiverPolicy | None = None,
                   writes: AnsweredWrites | None = None):
    """The SCP's callback: file one received instance under the move that asked for it, once `policy`
    (None: keep everything, for in-process tests of the SCPs) agreed. With `writes`, an instance of a live
    move is written right after its answer (AnsweredWrites says why that loses nothing); a plain C-STORE
    is always written before it is answered."""
    quota = UnsolicitedQuota(staging.root / "_unsolicited")

    def on_instance(instance: ReceivedInstance) -> int:
        why = policy.refusal(instance) if policy is not None else None
        if why:
            log.warning("refused an instance from %s: %s", instance.calling_ae, why)
            raise InstanceRefused(NOT_AUTHORIZED, f"Refused: {why}")
        folder = staging.folder(instance.move_originator_ae, instance.move_originator_message_id,
                                instance.calling_ae)
        if why == "":
            if not quota.take(instance.size):
                raise InstanceRefused(0xA700, "Refused: the quota for unsolicited instances is used up")
        elif policy is not None:  # part of a live move: anything not of its study is staged apart
            _, study, series = policy.live_move(instance.move_originator_message_id)
            move_folder, folder = folder, arrival_folder(folder, foreign_reason(instance, study, series))
            if writes is not None:
                instance.after_answer = writes.after_answer(move_folder, folder, instance.sop_instance_uid,
                                                            instance.chunks, instance.written)
                return 0x0000
        staging.write(folder, instance.sop_instance_uid, instance.chunks)
        instance.written()
        log.debug("staged %s from %s into %s", instance.sop_instance_uid, instance.calling_ae, folder)
        return 0x0000

    on_instance.quota = quota
    return on_instance
