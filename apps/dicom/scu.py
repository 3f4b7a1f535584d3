"""What the retrieval and sending paths ask of an SCU, and the socket-level implementations that provide it
(wire/; pynetdicom serves echo and the browsing queries, apps/dicom/dimse.py).

There is no setting to run these paths on pynetdicom instead: wire/ does everything they need, TLS
included (connect.open_socket), and the code behind a switch that no deployment flips went untested in
practice. A PACS that misbehaves with these SCUs is a bug to fix here, with a test against it.

The contract, for callers and for any implementation put behind these names:

Opening an association (every entry point below) raises
  ConnectionFailed     refused, no answer, host unknown, TLS certificate refused or handshake failed
                       (`retriable` unless it is a configuration problem);
  DicomTimeout         the TCP connection opened but the association request went unanswered;
  AssociationRejected  the peer said no (its reason in words) or accepted none of the contexts;
  AssociationAborted   the peer dropped or aborted the request.
During a request:
  AssociationAborted   the peer dropped or aborted the association, or broke the protocol (we abort);
  DicomTimeout         no response within the peer's timeout (query_timeout per C-FIND response,
                       retrieve_timeout per C-STORE and for a whole C-GET/C-MOVE, which is cancelled first);
  DimseFailure         a failure status refused the request, or the peer does not offer the service;
  RetrieveCanceled     the caller's stop event ended a C-GET/C-MOVE (C-CANCEL, then abort).
A C-STORE's failure status is an outcome (StoreOutcome.ok False), not an error; a file that proves not
to be complete DICOM raises InvalidDicomFile and the association stays usable. Every message names the peer.
"""
from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

from pydicom.dataset import Dataset

from apps.dicom.files import DicomFileInfo
from apps.dicom.outcomes import MoveResult, StoreOutcome
from apps.dicom.peers import LocalAE, RemoteAE
from apps.dicom.wire import find_scu, get_scu, move_scu, store_scu

if TYPE_CHECKING:
    from apps.dicom.wire.received import ReceivedInstance


class FindAssociation(Protocol):
    def find(self, level: str, query: dict | Dataset, *, limit: int | None = None) -> list[Dataset]:
        """Study Root C-FIND matches (keys with an empty value are the return keys asked for). With
        `limit`, at most limit + 1 come back and the PACS is asked to stop (C-CANCEL) at that one."""


class OpensFind(Protocol):
    def __call__(self, peer: RemoteAE, local: LocalAE) -> AbstractContextManager[FindAssociation]:
        """An association for C-FINDs, released when the block ends, aborted if it raises; inside
        reuse.reusing_associations(), the fresh idle one the previous block left with this peer."""


class StoreAssociation(Protocol):
    def store_file(self, path: str | Path, info: DicomFileInfo) -> StoreOutcome:
        """C-STORE one file whose header files.read_meta read (`info`), proven complete, as its bytes.
        A pair the peer did not accept is an outcome saying so, nothing is sent."""


class OpensStore(Protocol):
    def __call__(self, peer: RemoteAE, local: LocalAE, pairs: list[tuple[str, str]]
                 ) -> AbstractContextManager[StoreAssociation]:
        """An association proposing exactly these (SOP class, transfer syntax) pairs, at most
        syntaxes.MAX_CONTEXTS: released when the block ends, aborted if it raises."""


class CGet(Protocol):
    def __call__(self, peer: RemoteAE, local: LocalAE, query: dict,
                 on_instance: Callable[[ReceivedInstance], int], *, level: str = "STUDY", message_id: int = 1,
                 stop: threading.Event | None = None) -> MoveResult:
        """C-GET (Study Root) on an association of its own; each instance goes to `on_instance`, which
        returns the status word to answer (raising makes that instance fail). Failures after
        sub-operations ran are a result (counts, failed UIDs), not an error."""


class CMove(Protocol):
    def __call__(self, peer: RemoteAE, local: LocalAE, query: dict, destination_ae: str, *,
                 level: str = "STUDY", message_id: int = 1, stop: threading.Event | None = None) -> MoveResult:
        """C-MOVE (Study Root) to `destination_ae` on an association of its own; the PACS tags its
        C-STOREs with our AE title and `message_id` (Move Originator) so the receiver can tell this move's."""


find_association: OpensFind = find_scu.find_association
store_association: OpensStore = store_scu.store_association
c_get: CGet = get_scu.c_get
c_move: CMove = move_scu.c_move
