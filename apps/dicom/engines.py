"""The receiver's two Storage SCPs by name (the RECEIVER_ENGINE setting). The SCUs have no switch:
apps/dicom/scu.py."""
from __future__ import annotations

from apps.dicom.scp import StorageSCP
from apps.dicom.wire.storage_scp import LeanStorageSCP

STORAGE_SCPS = {"lean": LeanStorageSCP, "pynetdicom": StorageSCP}
