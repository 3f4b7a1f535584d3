"""The two implementations of the hot paths, by name: the socket-level ones in wire/ (the default: about
3x pynetdicom's throughput, bench/retrieve.py) and pynetdicom's, kept as a fallback and a reference.
Settings RECEIVER_ENGINE, CGET_ENGINE, MOVE_ENGINE, FIND_ENGINE and STORE_ENGINE pick one; both sides take and
return the same things."""
from __future__ import annotations

from apps.dicom import dimse
from apps.dicom.scp import StorageSCP
from apps.dicom.wire.find_scu import find_association
from apps.dicom.wire.get_scu import c_get
from apps.dicom.wire.move_scu import c_move
from apps.dicom.wire.storage_scp import LeanStorageSCP
from apps.dicom.wire.store_scu import store_association


def pynetdicom_store_association(peer, local, pairs):
    return dimse.associate(peer, local, purpose="store", contexts=pairs)


def pynetdicom_find_association(peer, local):
    return dimse.associate(peer, local, purpose="query")


STORAGE_SCPS = {"lean": LeanStorageSCP, "pynetdicom": StorageSCP}
C_GETS = {"lean": c_get, "pynetdicom": dimse.get}
C_MOVES = {"lean": c_move, "pynetdicom": dimse.move}  # (peer, local, query, destination AE, ...)
FIND_ASSOCIATIONS = {"lean": find_association, "pynetdicom": pynetdicom_find_association}  # (peer, local): .find()
STORE_SCUS = {"lean": store_association, "pynetdicom": pynetdicom_store_association}  # (peer, local, pairs)
DEFAULT = "lean"
