"""What the portal announces and offers on every association, whichever engine speaks: our implementation
identity, the transfer syntaxes we propose and accept, and the storage SOP classes we receive."""
from __future__ import annotations

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, StoragePresentationContexts

# A UUID-derived UID (PS3.5 B.2), made once for PACS Portal; the version name changes with the protocol code.
IMPLEMENTATION_CLASS_UID = "2.25.5478629317868288133882669296859172991"
IMPLEMENTATION_VERSION_NAME = "PACSPORTAL_1"  # at most 16 characters

# Uncompressed first: a PACS choosing per SOP class then sends uncompressed objects as they are, and
# compressed ones still arrive as stored.
UNCOMPRESSED = [str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian)]
TRANSFER_SYNTAXES = UNCOMPRESSED + [str(ts) for ts in ALL_TRANSFER_SYNTAXES if str(ts) not in UNCOMPRESSED]

# Every storage SOP class we accept as an SCP; and the common ones that fit on one association next to a
# query/retrieve context (PS3.8 allows 128 presentation contexts per association).
ALL_STORAGE_SOP_CLASSES = [str(cx.abstract_syntax) for cx in AllStoragePresentationContexts]
COMMON_STORAGE_SOP_CLASSES = [str(cx.abstract_syntax) for cx in StoragePresentationContexts]
MAX_CONTEXTS = 128
