"""Keeping an association open between the small requests of a batch.

A worker running a long case list asks one PACS one C-FIND per row. Opening and releasing an association
costs about 16 ms against Orthanc, the C-FIND on an open one about 3 ms, so inside `reusing_associations()`
`dimse.associate(...)` hands back the association the previous block left open with the same peer and
purpose instead of opening a new one.

The count of associations to a PACS must not grow: a pool keeps at most one idle association per peer,
and any new connection to that peer (another purpose, a C-GET on its own socket) closes the idle one
first (`before_connect`, called by connect.py). An association idle longer than `idle_seconds`, or
open longer than `max_age_seconds`, is released rather than reused: before the PACS's own idle timeout
closes it under us, and so that no association lives long enough to meet a PACS's limit on its age.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from contextvars import ContextVar

from apps.dicom.errors import DicomError

_current: ContextVar["AssociationPool | None"] = ContextVar("association_pool", default=None)


def _address(peer) -> tuple:
    return peer.host, peer.port, peer.ae_title


class AssociationPool:
    def __init__(self, idle_seconds: float = 5.0, max_age_seconds: float = 20.0):
        self.idle_seconds, self.max_age_seconds = idle_seconds, max_age_seconds
        self._idle: dict[tuple, tuple[object, float]] = {}  # key -> (dimse.Association, idle since)
        self._opened_at: dict[int, float] = {}  # id(association) -> when it was first given to the pool
        self.opened = 0  # associations opened while this pool was active (for tests and logs)
        self.reused = 0

    def take(self, key):
        """The idle association for `key` if it is still established and fresh, else None."""
        wrapper, since = self._idle.pop(key, (None, 0.0))
        if wrapper is None:
            return None
        now = time.monotonic()
        too_old = now - self._opened_at.get(id(wrapper), now) > self.max_age_seconds
        if now - since > self.idle_seconds or too_old or not wrapper.raw.is_established:
            self._opened_at.pop(id(wrapper), None)
            _close(wrapper)
            return None
        self.reused += 1
        return wrapper

    def give(self, key, wrapper) -> None:
        """Keep `wrapper` for the next block with the same key; one idle association per peer."""
        self.close_peer(key[0])
        self._opened_at.setdefault(id(wrapper), time.monotonic())
        self._idle[key] = (wrapper, time.monotonic())

    def close_peer(self, peer) -> None:
        for key in [k for k in self._idle if _address(k[0]) == _address(peer)]:
            wrapper = self._idle.pop(key)[0]
            self._opened_at.pop(id(wrapper), None)
            _close(wrapper)

    def close(self) -> None:
        for wrapper, _ in self._idle.values():
            _close(wrapper)
        self._idle.clear()
        self._opened_at.clear()


def _close(wrapper) -> None:
    wrapper.release()


def lend(pool: AssociationPool, key, wrapper):
    """Yield a pooled association; it goes back to the pool unless the block broke it: a DICOM error, or
    an exception in the middle of a request (the peer may still be answering it), aborts it."""
    try:
        yield wrapper
    except Exception as exc:
        if isinstance(exc, DicomError) or wrapper.busy or not wrapper.raw.is_established:
            wrapper.raw.abort()
        else:
            pool.give(key, wrapper)
        raise
    except BaseException:
        wrapper.raw.abort()
        raise
    if wrapper.raw.is_established:
        pool.give(key, wrapper)


def pooled_or_own(key, open_new):
    """Yield an association: inside reusing_associations() and with a `key` (None: never pooled), the
    pool's idle one for `key` if fresh, else one from `open_new()`, lent (see lend); otherwise one from
    `open_new()` for this block alone, released at the end and aborted if the block raises. Serves both
    dimse.associate and the socket-level C-FIND SCU (wire/find_scu.find_association)."""
    pool = current() if key is not None else None
    wrapper = pool.take(key) if pool is not None else None
    if wrapper is None:
        wrapper = open_new()
        if pool is not None:
            pool.opened += 1
    if pool is not None:
        yield from lend(pool, key, wrapper)
        return
    try:
        yield wrapper
    except BaseException:
        wrapper.raw.abort()
        raise
    wrapper.release()


def current() -> AssociationPool | None:
    return _current.get()


def before_connect(peer) -> None:
    """Called before any new connection to `peer`: an idle pooled association to it is closed first, so
    this process never holds more associations to a peer than it uses."""
    pool = _current.get()
    if pool is not None:
        pool.close_peer(peer)


@contextmanager
def reusing_associations(idle_seconds: float = 5.0, max_age_seconds: float = 20.0):
    """Within the block, `dimse.associate` reuses associations; all are released when it ends."""
    pool = AssociationPool(idle_seconds, max_age_seconds)
    token = _current.set(pool)
    try:
        yield pool
    finally:
        _current.reset(token)
        pool.close()
