"""Decoding and JPEG encoding in a process pool, so an import uses every core while this process keeps
the database work. One pool per process, started on first use (forkserver: a clean process to fork
from, never a copy of this one's threads and database connections). Workers of the django-q cluster
are daemonic and may not have children: there the batch renders in-process, and the cluster's own
workers give the parallelism."""
from __future__ import annotations

import logging
import multiprocessing
import threading
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from django.conf import settings

from apps.dicom.flat_image import quick_read_and_render
from apps.dicom.render import read_and_render, read_and_render_by_pydicom
from apps.jobs.errors import ItemFailed

log = logging.getLogger("apps.imports")
# Files per message to a decoder process: each message costs this process ~0.75 ms of CPU in the
# executor's threads (futures, pickles, wake-ups), 0.19 ms per image at 4 files, 0.07 at 16; a batch's
# last message may leave one decoder idle for its length (~35 ms) while this process files its backlog.
PIPE_CHUNK = 16
_pool: ProcessPoolExecutor | None = None
_lock = threading.Lock()


def processes() -> int:
    if multiprocessing.current_process().daemon:
        return 1
    return max(1, int(settings.IMPORT_PROCESSES))


def _get_pool(size: int) -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            context = multiprocessing.get_context("forkserver")
            # What the decoders start with: the quick way's module (flat_image, no pydicom), imported once, in the
            # forkserver; render.py (pydicom, ~0.8 s of CPU) only at a decoder's first file that goes its way.
            # one_blas_thread first, by name (imported here it would set this process's environment): numpy's
            # OpenBLAS, loaded there, starts no threads of its own.
            context.set_forkserver_preload(["apps.dicom.one_blas_thread", quick_read_and_render.__module__])
            _pool = ProcessPoolExecutor(max_workers=size, mp_context=context)
        return _pool


def _drop_pool() -> None:
    global _pool
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


def warm() -> None:
    """Start the pool's processes now, not at the first batch, and in a thread of their own so the scan walks
    the tree meanwhile: starting the first process waits until the forkserver has imported its preload."""
    size = processes()
    if size > 1:
        threading.Thread(target=_start, args=(size,), name="decoder-pool-start", daemon=True).start()


def _start(size: int) -> None:
    try:
        pool = _get_pool(size)
        for _ in range(size):
            pool.submit(int)
    except Exception as exc:  # only a head start: render_stream reports a pool that cannot start
        log.warning("decoder pool did not start early: %s", type(exc).__name__)


def render_stream(jobs: list[tuple[str, str]]):
    """render.read_and_render every (source, target) pair, yielding (header, (width, height), problem, catalog
    entry) in order as the pool delivers them, so the caller can file early results while later ones decode.
    The decoders read every file the quick way (flat_image, the module they start with); a file it does not
    take goes back to a decoder for pydicom's way (render.read_and_render_by_pydicom: that decoder imports
    render.py, and pydicom, at its first such file), and its answer comes in the file's place."""
    size = processes()
    if size == 1 or len(jobs) < 2:
        yield from (read_and_render(source, target) for source, target in jobs)
        return
    pool = _get_pool(size)
    waiting: deque = deque()  # in the jobs' order: answers, and futures of pydicom's answers
    try:
        quick = pool.map(quick_read_and_render, *zip(*jobs), chunksize=PIPE_CHUNK)
        for (source, target), answer in zip(jobs, quick):
            waiting.append(answer if answer is not None else pool.submit(read_and_render_by_pydicom, source, target))
            while waiting and _ready(waiting[0]):
                yield _answer(waiting.popleft())
        while waiting:
            yield _answer(waiting.popleft())
    except BrokenProcessPool:
        _drop_pool()
        raise ItemFailed("A decoder process died on one of this batch's files (a malformed image?); "
                         "the batch was not imported.") from None
    finally:  # a caller that stops early (a canceled job): pydicom's files not yet started are not decoded
        for item in waiting:
            if isinstance(item, Future):
                item.cancel()


def _ready(item) -> bool:
    return not isinstance(item, Future) or item.done()


def _answer(item):
    return item.result() if isinstance(item, Future) else item
