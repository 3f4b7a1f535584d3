"""What the receiver (`manage.py receive`) keeps: C-STOREs from the AE title of a configured server (or of
RECEIVER_ALLOWED_AE_TITLES), carrying our AE title and the live move key of a C-MOVE that was sent to that
very PACS, from that PACS's AE title *and* address (or a node its store_from lists). The key is 16 bits, so
it is one check among several: an instance of the wrong study, series or patient is staged apart and
quarantined (arrivals.py), and a peer answered "not authorized" more than a few times is cut off
(PeerGuard). Everything else is refused: an unknown peer's association is rejected, an instance outside any
move in flight gets a "not authorized" status and is never written (unless RECEIVER_KEEP_UNSOLICITED_MB
allows keeping plain C-STOREs, then within that quota and for RECEIVER_UNSOLICITED_DAYS).
An instance of a live move is answered once checked and noted in its move's ledger, and written right
after the answer (staging.AnsweredWrites says why nothing can be lost that way); a plain C-STORE is
answered only once written. While the staging or downloads folder is below its MIN_FREE_GB floor, the first
instance of a new move (and any plain C-STORE) is refused "out of resources" (0xA700), so no study is begun
that the disk cannot hold; a move already under way goes on into the floor kept free for it."""
from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection

from apps.audit import record
from apps.dicom.deid_form import Deidentifying
from apps.dicom.staged import QuotaSink
from apps.dicom.staging import VERBATIM, AnsweredWrites, MoveStaging
from apps.dicom.wire.received import InstanceRefused, ReceivedInstance, Throttle
from apps.jobs import diskspace
from apps.projects.models import Project
from apps.retrieval.arrivals import arrival_folder, foreign_reason
from apps.retrieval.models import MoveKey
from apps.servers.models import DicomServer

log = logging.getLogger("apps.retrieval.receive")
NOT_AUTHORIZED = 0x0124  # "Refused: Not authorized", a general DIMSE status (PS3.7 annex C)
OUT_OF_RESOURCES = 0xA700  # "Refused: Out of Resources", a C-STORE status (PS3.4 B.2.3)
RECEIVER_FOLDERS = ("staging", "downloads")  # a move is staged, then filed under the downloads
REFRESH_SECONDS = 5.0
RESOLVE_SECONDS = 60.0
RECENT_SECONDS = 3600.0
KEYS_REMEMBERED = 4096
CUT_OFF_FOLDER = ".cut-off"
FORM_SECONDS = 60.0


class ReceiverPolicy:
    """Thread-safe; asked from every association thread. The database is read on a cache miss only, and
    the connection closed after it, so the SCP's many short-lived threads never pile up connections."""

    def __init__(self, local_ae_title: str):
        self.local_ae_title = local_ae_title
        self._lock = threading.Lock()
        self._allowed: set[str] = set()
        self._trusted: set[str] = set()  # the addresses of every configured server and store_from node
        self._allowed_at = 0.0
        self._keys: dict[int, tuple[Move, float]] = {}  # message id -> (the move, cached until)
        self._recent: dict[int, float] = {}  # message ids seen live lately -> when: late instances of theirs are no guess
        self._forms: dict[int, tuple[Deidentifying, float]] = {}  # project id -> (its form, read again after)

    def _query(self, fn):
        try:
            return fn()
        finally:
            connection.close()  # this thread's own connection

    def _refresh(self) -> None:
        with self._lock:
            if time.monotonic() - self._allowed_at < REFRESH_SECONDS:
                return
        sources = [source for server in self._query(lambda: list(DicomServer.objects.all()))
                   for source in server.store_sources()]
        allowed = {ae for ae, _ in sources} | set(settings.RECEIVER_ALLOWED_AE_TITLES)
        trusted = {address for _, host in sources for address in addresses_of(host)}
        with self._lock:
            self._allowed, self._trusted, self._allowed_at = allowed, trusted, time.monotonic()

    def calling_ae_allowed(self, calling_ae: str) -> bool:
        with self._lock:
            if calling_ae in self._allowed and time.monotonic() - self._allowed_at < REFRESH_SECONDS:
                return True
        self._refresh()
        with self._lock:
            return calling_ae in self._allowed

    def trusted_address(self, address: str) -> bool:
        """A configured server's address (or one of its store_from nodes'): it may use every association slot."""
        self._refresh()
        with self._lock:
            return address in self._trusted

    def live_move(self, message_id: int) -> Move | None:
        """The live move under this key (cached for a few seconds once seen), or None."""
        with self._lock:
            cached = self._keys.get(message_id)
            if cached and cached[1] > time.monotonic():
                return cached[0]
        live = self._query(lambda: MoveKey.live(message_id))
        if live is None:
            return None
        move = Move(live.study, live.series, live.patient_id,
                    frozenset((ae, address) for ae, host in live.sources for address in addresses_of(host)),
                    live.project_id)
        with self._lock:
            now = time.monotonic()
            self._keys[message_id] = (move, now + REFRESH_SECONDS)
            if len(self._recent) >= KEYS_REMEMBERED:
                self._recent.clear()
            self._recent[message_id] = now
        return move

    def form(self, move: Move):
        """How the move's instances are staged: as they came, or de-identified for its research project
        (one form per project for a minute, its recipe's UID cache and the patients looked up kept)."""
        if move.project_id is None:
            return VERBATIM
        with self._lock:
            found = self._forms.get(move.project_id)
        if found is None or found[1] < time.monotonic():  # a project's options may change: read again
            form = deidentifying_form(self._query(lambda: Project.objects.get(pk=move.project_id)), self._query)
            found = (form, time.monotonic() + FORM_SECONDS)
            with self._lock:
                if len(self._forms) >= KEYS_REMEMBERED:
                    self._forms.clear()
                self._forms[move.project_id] = found
        return found[0]

    def was_live(self, message_id: int | None) -> bool:
        """Whether this key was live within the hour: an instance arriving late for it is no guess."""
        with self._lock:
            seen = self._recent.get(message_id)
        return seen is not None and time.monotonic() - seen < RECENT_SECONDS

    def refusal(self, instance: ReceivedInstance) -> str | None:
        """Why this instance must not be kept, or None ("" for a plain C-STORE kept under the quota)."""
        if not self.calling_ae_allowed(instance.calling_ae):
            return f"calling AE title {instance.calling_ae!r} is not a configured server"
        if instance.move_originator_ae is None or instance.move_originator_message_id is None:
            return "" if settings.RECEIVER_KEEP_UNSOLICITED_MB > 0 else "not part of a retrieval (no move originator)"
        if instance.move_originator_ae != self.local_ae_title:
            return f"moved for another AE title ({instance.move_originator_ae!r})"
        move = self.live_move(instance.move_originator_message_id)
        if move is None:
            return f"no retrieval in flight under move {instance.move_originator_message_id}"
        if (instance.calling_ae, instance.peer_address) not in move.sources:
            return (f"move {instance.move_originator_message_id} was not sent to {instance.calling_ae} at "
                    f"{instance.peer_address}")
        return None


@dataclass(frozen=True)
class Move:
    """A live move as the receiver checks its instances: study, series ("" for all), the PatientID its
    C-FIND answered, and the (AE title, IP address) pairs its C-STOREs may come from."""

    study: str
    series: str
    patient_id: str
    sources: frozenset
    project_id: int | None = None


def deidentifying_form(project, query=lambda fn: fn()) -> Deidentifying:
    """A project's de-identifying form; its patients looked up in the project's map through `query` (the
    receiver's threads close their connection after each look), each once per form."""
    patients: dict[str, object] = {}

    def patient_for(patient_id: str):
        found = patients.get(patient_id)
        if found is None:
            found = patients[patient_id] = query(lambda: project.patient(patient_id))
        return found

    return Deidentifying(project.recipe(), patient_for)


_resolved: dict[str, tuple[frozenset, float]] = {}


def addresses_of(host: str) -> frozenset:
    """The IP addresses `host` names (itself for an address), resolved at most once a minute."""
    if not host:
        return frozenset()
    try:
        return frozenset({str(ipaddress.ip_address(host))})
    except ValueError:
        pass
    cached = _resolved.get(host)
    if cached and cached[1] > time.monotonic():
        return cached[0]
    try:
        found = frozenset(info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP))
    except OSError as exc:
        log.warning("cannot resolve the server host %s (%s): nothing moved from it is kept", host, exc)
        found = frozenset()
    if len(_resolved) >= KEYS_REMEMBERED:
        _resolved.clear()
    _resolved[host] = (found, time.monotonic() + RESOLVE_SECONDS)
    return found


class PeerGuard:
    """Cuts off a peer address that keeps guessing: after more than RECEIVER_REFUSALS_ALLOWED "not
    authorized" answers its association is aborted and every association from it is rejected for
    RECEIVER_CUT_OFF_SECONDS. Counted per address in each receiver process, and the cut-off shared by all of
    them through a file per address under the staging folder's `.cut-off/`. Logged once and audited."""

    def __init__(self, folder: Path, query=lambda fn: fn()):
        self.folder, self._query = folder, query
        self._lock = threading.Lock()
        self._refusals: dict[str, int] = {}
        self._until: dict[str, float] = {}  # address -> time.time() its cut-off ends

    def _marker(self, address: str) -> Path:
        return self.folder / address.replace(":", "_")

    def cut_off(self, address: str) -> bool:
        """Whether `address` is cut off now (asked once per association, and per refusal)."""
        now = time.time()
        with self._lock:
            until = self._until.get(address)
        if until is None:
            try:
                until = float(self._marker(address).read_text() or 0)
            except (OSError, ValueError):
                return False
        return until > now

    def accepts(self, address: str) -> bool:
        return not self.cut_off(address)

    def refused(self, address: str, calling_ae: str) -> bool:
        """Count one "not authorized" answer to `address`; True when the peer is (now) cut off."""
        if self.cut_off(address):
            return True
        with self._lock:
            count = self._refusals.get(address, 0) + 1
            if len(self._refusals) >= KEYS_REMEMBERED:
                self._refusals.clear()
            self._refusals[address] = count
            if count <= settings.RECEIVER_REFUSALS_ALLOWED:
                return False
            seconds = settings.RECEIVER_CUT_OFF_SECONDS
            self._until[address] = time.time() + seconds
            self._refusals.pop(address, None)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._marker(address).write_text(str(self._until[address]))
        except OSError as exc:
            log.error("cannot share the cut-off of %s with the other receiver processes: %s", address, exc)
        log.warning("cut off the peer at %s (calling as %s) for %g s: %d C-STOREs answered 'not authorized' "
                    "(guessing move keys?)", address, calling_ae, seconds, count)
        try:
            self._query(lambda: record("receiver", "receiver.peer_cut_off", f"address:{address}",
                                       calling_ae=calling_ae, refusals=count, seconds=seconds))
        except Exception:  # the audit trail's database being away must not keep the peer in
            log.exception("cannot audit the cut-off of %s", address)
        return True


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

    def give_back(self, size: int) -> None:
        with self._lock:
            self._used -= size

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


def space_refusal(*, alert: bool = False) -> str | None:
    """Why a new move must not begin here now (a folder it needs is below its floor), or None. `alert`: tell
    the operators (from a receiver thread, whose database connection is closed after it)."""
    short = diskspace.shortages(RECEIVER_FOLDERS)
    if alert and short:
        try:
            for found in short:
                diskspace.alert_low_space(found)
        finally:
            connection.close()
    return "; ".join(f"{found.folder}: {found.describe()}" for found in short) or None


def staging_writer(staging: MoveStaging, policy: ReceiverPolicy | None = None,
                   writes: AnsweredWrites | None = None, guard: PeerGuard | None = None,
                   throttle: Throttle | None = None):
    """The SCP's callback: file one received instance under the move that asked for it, once `policy`
    (None: keep everything, for in-process tests of the SCPs) agreed. With `writes`, an instance of a live
    move is written right after its answer (AnsweredWrites says why that loses nothing); a plain C-STORE
    is always written before it is answered. With `guard`, refusals count against the peer's address."""
    quota = UnsolicitedQuota(staging.root / "_unsolicited")
    throttle = throttle or Throttle()

    def refuse(instance: ReceivedInstance, why: str):
        key = instance.move_originator_message_id
        straggler = policy.was_live(key) and policy.live_move(key) is None  # a move that ended, no guess
        cut = guard is not None and not straggler and guard.refused(instance.peer_address, instance.calling_ae)
        quiet = throttle.due(instance.peer_address)
        if quiet is not None:
            log.warning("refused an instance from %s at %s: %s%s", instance.calling_ae, instance.peer_address, why,
                        f" ({quiet} more refused from that address in the last minute, not logged)" if quiet else "")
        raise InstanceRefused(NOT_AUTHORIZED, f"Refused: {why}", cut_off=cut)

    def refuse_for_space(instance: ReceivedInstance, low: str):
        if throttle.due(instance.peer_address) is not None:
            log.warning("refused an instance from %s at %s: out of resources (%s)", instance.calling_ae,
                        instance.peer_address, low)
        raise InstanceRefused(OUT_OF_RESOURCES, f"Refused: out of resources ({low})")

    def on_instance(instance: ReceivedInstance) -> int:
        why = policy.refusal(instance) if policy is not None else None
        if why:
            refuse(instance, why)
        folder = staging.folder(instance.move_originator_ae, instance.move_originator_message_id,
                                instance.calling_ae)
        # a plain C-STORE, or the first instance of a move (a move this process wrote into has begun)
        if why == "" or not ((writes is not None and writes.started(folder)) or folder.exists()):
            low = space_refusal(alert=True)
            if low:
                refuse_for_space(instance, low)
        if why == "":
            if not quota.take(instance.size):
                raise InstanceRefused(0xA700, "Refused: the quota for unsolicited instances is used up")
        elif policy is not None:  # part of a live move: anything not of its study and patient is staged apart
            move = policy.live_move(instance.move_originator_message_id)
            if move is None:  # expired since refusal() looked
                refuse(instance, f"no retrieval in flight under move {instance.move_originator_message_id}")
            reason = foreign_reason(instance, move.study, move.series, move.patient_id)
            move_folder, folder = folder, arrival_folder(folder, reason)
            if writes is not None:  # foreign instances stay as they came, for the quarantine
                writes.take(instance, move_folder, folder, VERBATIM if reason else policy.form(move))
                return 0x0000
        if instance.streamed:  # written as it arrives, answered once complete
            instance.sink = staging.open(folder, instance.sop_instance_uid, instance.chunks)
            if why == "":  # the rest counts against the quota as it arrives
                instance.sink = QuotaSink(instance.sink, quota, instance.size)
            return 0x0000
        staging.write(folder, instance.sop_instance_uid, instance.chunks)
        instance.written()
        log.debug("staged %s from %s into %s", instance.sop_instance_uid, instance.calling_ae, folder)
        return 0x0000

    on_instance.quota = quota
    return on_instance
