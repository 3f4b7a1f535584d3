"""How DICOM elements lie in bytes: the facts every reader and writer of elements in apps/dicom shares
(element_codec.py, files.py, flat.py, split.py, query.py, wire/streamed.py). A module of their own, without
pydicom, so the quick image reader (flat.py, flat_image.py) starts a decoder process without importing it."""
from __future__ import annotations

# Explicit VRs whose length field is 4 bytes after 2 reserved ones (PS3.5 7.1.2).
LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"})
UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
# The delimiters as written, alike in both VR forms (the tags of items and delimiters have no VR).
ITEM_END_BYTES, SEQUENCE_END_BYTES = b"\xfe\xff\x0d\xe0\0\0\0\0", b"\xfe\xff\xdd\xe0\0\0\0\0"
# The fixed value size of each binary number VR.
NUMERIC_SIZES = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "AT": 4, "UV": 8, "SV": 8}
EXPLICIT_LE, IMPLICIT_LE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
# Data sets element_codec.py and flat.py do not read (pydicom does): explicit VR big endian, and deflated.
BIG_ENDIAN_OR_DEFLATED = frozenset({"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})
MAX_DEPTH = 32  # sequences within sequences: real files stay within a handful, deeper is malformed
