"""C-MOVE of a row's studies into our receiver: the whole study on one association, or, when the server
allows two or more associations, its series in parallel on several.

A PACS answering a C-MOVE sends one instance at a time and waits for our receiver's answer before the
next, so one move leaves the machine idle between the PACS's reads and the receiver's writes; two or
three series moving at once fill those gaps. Each series move is reconciled on its own: its own move key
(so its own staging folder, and the receiver keeps only instances of that series under it), the count
the PACS gave for that series, and the series counts must add up to the study's before a study is split
at all. The server's association limit holds: every extra association takes a slot of its own
(ctx.association_slot), without waiting for one; a busy server simply gets fewer parallel moves.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from apps.dicom import reuse
from apps.dicom.errors import DicomTimeout, DimseFailure, RetrieveCanceled
from apps.dicom.scu import c_move
from apps.jobs.errors import ItemCanceled, ItemFailed
from apps.retrieval.early_entries import EarlyEntries
from apps.retrieval.models import MoveKey
from apps.retrieval.receiver_check import receiver_problem, receiver_saturation
from apps.retrieval.receiving import space_refusal

if TYPE_CHECKING:
    from apps.dicom.staging import MoveStaging

log = logging.getLogger(__name__)

MOVE_KEY_MARGIN_SECONDS = 60.0  # a move key outlives its move's timeout by this much, then expires
# How long the receiver may trail the final C-MOVE response before a shortfall counts (a PACS sends
# the last C-STORE before its final response, but our receiver is another process writing to disk).
RECEIVER_GRACE_SECONDS = 2.0
RECEIVER_POLL_SECONDS = 0.002  # the receiver answers before its last write lands: it is usually a moment behind


class AnyOf:
    """Set when any of its events is: the item's stop request, or a failed sibling move."""

    def __init__(self, *events: threading.Event):
        self.events = events

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)


def series_parts(assoc, plan) -> list:
    """The study's series as plans of their own (their SeriesInstanceUID and instance count), largest
    first, or [plan] itself when it has fewer than two series, a series is listed twice, or the series
    counts do not add up to the study's: a split is trusted only when its parts account for the whole
    study exactly."""
    found = assoc.find("SERIES", {"StudyInstanceUID": plan.uid, "SeriesInstanceUID": "",
                                  "NumberOfSeriesRelatedInstances": ""})
    parts = []
    for series in found:
        uid = str(series.get("SeriesInstanceUID", "") or "").strip()
        count = str(series.get("NumberOfSeriesRelatedInstances", "") or "").strip()
        if not uid or not count.isdigit():
            return [plan]
        parts.append(replace(plan, expected=int(count), series_uid=uid))
    if (len(parts) < 2 or plan.expected is None or len({p.series_uid for p in parts}) != len(parts)
            or sum(p.expected for p in parts) != plan.expected):
        return [plan]
    # Largest first: the associations take the next part as each comes free, so the small series fill
    # in at the end instead of a large one starting last on one association while the others wait.
    return sorted(parts, key=lambda part: -part.expected)


@contextlib.contextmanager
def extra_slots(ctx, server, wanted: int):
    """Up to `wanted` association slots of `server` beyond the one the row holds, taken only if free now."""
    with contextlib.ExitStack() as stack:
        got = 0
        for _ in range(wanted):
            try:
                stack.enter_context(ctx.association_slot(server, timeout=0))
            except DicomTimeout:
                break
            got += 1
        yield got


def move_to_receiver(peer, local, part, message_id: int, stop, failed: threading.Event | None = None):
    """A C-MOVE of `part` to our receiver. When C-STOREs to us failed, the PACS is blamed only once our own
    receiver is known to be up: a dead receiver is said to be one, in the item and at INFO, and `failed` is
    set so the parts beside it stop. A move the PACS refused (DimseFailure) leaves its siblings running: what
    they bring is filed, and a retry moves only the refused part (resume.py)."""
    level, query = part.move_query()
    started = time.time()
    try:
        result = c_move(peer, local, query, local.ae_title, level=level,
                                               message_id=message_id, stop=stop)
    except DimseFailure:
        try:
            _fail_if_receiver_down(started)
        except ItemFailed:
            if failed is not None:
                failed.set()
            raise
        raise
    if result.failed:  # some C-STOREs to us failed: a receiver that died mid-move is to blame, not the PACS
        _fail_if_receiver_down(started)
    return result


def _fail_if_receiver_down(started: float) -> None:
    low = space_refusal()  # our disk, below its floor: the receiver refused the move's first instance
    if low:
        raise ItemFailed(f"The C-MOVE failed because our receiver refused it: out of resources ({low}). "
                         "The PACS is not to blame; free space, then retry the row.")
    problem = receiver_problem()  # first: the receiver publishes a refusal for want of a slot a moment after it
    full = receiver_saturation(since=started)
    if full:
        log.info("retrieval failed because the receiver was full: %s", full)
        raise ItemFailed(f"The C-MOVE failed because {full}. The PACS is not to blame; retry the row.")
    if problem:
        log.info("retrieval failed because the receiver is down: %s", problem)
        raise ItemFailed(f"The C-MOVE failed because {problem[0].lower()}{problem[1:]}")


def move_parts(row, parts: list, peer, local, *, list_instances, pool: int = 1) -> None:
    """C-MOVE each part (a study, or a series of one) into the receiver, `pool` at a time, each under its
    own move key, and check and file what arrived for each as soon as its move ends. A part the PACS refuses
    leaves the others going; any other failure (our receiver, a timeout, a cancel) stops them. The first
    failure is raised once every move ended; what arrived whole of a failed part is checked and settled
    (retrieve.py), so a retry moves only what is missing."""
    item, ctx, staging = row.item, row.ctx, row.staging
    failed = threading.Event()
    stop = AnyOf(ctx.stop_requested, failed)
    # At most `pool` associations at once, ours included: each move holds the gate while it runs, and so
    # does a listing of a series' instances that the filing of a finished move may need.
    gate = threading.BoundedSemaphore(max(1, pool))
    keys = {}
    rounds = -(-len(parts) // max(1, pool))  # the last part may start this many move timeouts from now
    try:
        for part in parts:
            keys[id(part)] = MoveKey.allocate(item, row.server.ae_title, part.uid, series=part.series_uid or "",
                                              seconds=peer.retrieve_timeout * rounds + MOVE_KEY_MARGIN_SECONDS,
                                              patient_id=part.patient_id, server=row.server)
            # A number drawn again starts from an empty folder, whatever a dead move of it left there.
            staging.remove(staging.folder(local.ae_title, keys[id(part)].message_id))

        def run(part):
            if stop.is_set():  # a sibling failed or the row was canceled before this part's turn
                raise RetrieveCanceled("not started: the retrieval was stopped")
            with gate:
                try:
                    return move_to_receiver(peer, local, part, keys[id(part)].message_id, stop, failed)
                except DimseFailure:
                    raise  # the PACS refused this part: the others go on
                except BaseException:
                    failed.set()  # before this thread takes the next part: it must find the row stopping
                    raise

        def listed(uid, series):
            with gate:
                return list_instances(uid, series)

        def fetch(part, moved):
            row.fetch(part, staging.folder(local.ae_title, keys[id(part)].message_id), lambda _query: moved(),
                      listed, wait_for_receiver=True)

        if pool <= 1 or len(parts) == 1:
            row.fetch_in_turn(parts, lambda part: fetch(part, lambda: run(part)))
            return
        first_error = None
        reuse.before_connect(peer)  # the query association left open for reuse is one of ours: close it
        def run_reading(part):  # its files' headers read while it moves, as row.fetch does for one move
            with EarlyEntries(staging.folder(local.ae_title, keys[id(part)].message_id), row.early_entries):
                return run(part)

        with ThreadPoolExecutor(max_workers=pool, thread_name_prefix="c-move") as moves:
            running = {moves.submit(run_reading if row.pseudonymizer is None else run, part): part for part in parts}
            for done in as_completed(running):
                try:
                    fetch(running[done], done.result)
                except BaseException as exc:  # the first real failure wins over the cancels it caused
                    if not isinstance(exc, DimseFailure):
                        failed.set()
                    if first_error is None or isinstance(first_error, ItemCanceled):
                        first_error = exc
        if first_error is not None:
            raise first_error
    finally:
        for key in keys.values():
            key.delete()


def wait_for_staged(staging: MoveStaging, folder: Path, expected: int, sops=None) -> list[Path]:
    """What a C-MOVE staged, once `expected` instances (every one of `sops`, when the PACS listed them)
    are there and no write is under way: our receiver is another process, and it answers an instance
    before its file is complete, so its last writes may trail the final response a little."""
    wanted, deadline = set(sops) if sops is not None else None, time.monotonic() + RECEIVER_GRACE_SECONDS
    while True:
        names, unwritten = staging.progress(folder)
        if len(names) >= expected and not unwritten and (
                wanted is None or wanted <= {name[:-len(".dcm")] for name in names}):
            break
        if time.monotonic() >= deadline or staging.write_failure(folder):
            break
        time.sleep(RECEIVER_POLL_SECONDS)
    return [folder / name for name in names]
