"""Storing instances on a DicomServer: the one way the sending jobs, the photo page and delivery do it.
C-STORE (the socket-level SCU) or STOW-RS to the server's DICOMweb URL, inside the caller's association
slot; the DICOM layer gets plain peers (apps/dicom/store.py does the work)."""
from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Callable, ContextManager, Iterable

from apps.dicom import store as dicom_store
from apps.dicom.errors import DicomError
from apps.dicom.store import Source, StoreReport
from apps.servers.models import DicomServer, local_ae
from apps.servers.outbound import outbound_problem

C_STORE, STOW_RS = "c-store", "stow-rs"


def store(server: DicomServer, sources: Iterable[Source], *, method: str = C_STORE,
          slot: ContextManager | None = None, timeout: float | None = None, verify_tls: bool | None = None,
          on_progress: Callable[[int, int], None] | None = None, stow_batch: int = 20) -> StoreReport:
    """Store files (paths, or (path, header) pairs whose header files.read_meta read) on `server` by
    `method`, and say per file what became of it (StoreReport: stored, with warnings, failed with the
    reason, and which of those were not complete DICOM and so never sent).

    `slot`: held around the exchange (a job's ctx.association_slot(server)), so the server's limit on
    parallel associations holds across workers whichever protocol is used. `timeout` (seconds) replaces
    the server's for connecting and each answer; `verify_tls` the DICOMweb endpoint's certificate check.
    An error that ends the exchange is a DicomError naming the server and the cause, with `.report`
    holding what was done before it (absent when nothing was attempted)."""
    if method not in (C_STORE, STOW_RS):
        raise ValueError(f"unknown store method {method!r}; use {C_STORE!r} or {STOW_RS!r}")
    if method == STOW_RS:
        target = server.as_dicomweb()
        if target is None:
            raise DicomError(f"Server {server.name} has no DICOMweb URL; STOW-RS is not possible. Set one in the "
                             "admin or send by C-STORE.")
        problem = outbound_problem(server.dicomweb_url)  # again now: a name may resolve elsewhere since it was saved
        if problem:
            raise DicomError(f"Server {server.name}: {problem}. Nothing was sent.")
        if timeout is not None:
            target = replace(target, timeout=timeout)
        if verify_tls is not None:
            target = replace(target, verify_tls=verify_tls)
    else:
        target = server.as_peer()
        if timeout is not None:
            target = replace(target, connect_timeout=timeout, query_timeout=timeout, retrieve_timeout=timeout)
    with slot or contextlib.nullcontext():
        return dicom_store.store(target, sources, local=local_ae(), on_progress=on_progress, stow_batch=stow_batch)
