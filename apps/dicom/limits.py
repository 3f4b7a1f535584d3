"""Sizes the DICOM layer never handles in one piece. Apart from files.py (which imports pydicom) so the quick
image reader, flat_image.py, knows them without it."""

# Above this size a file is never read whole: it is proven complete and sent where it lies
# (split.open_complete), rendered, rewritten and de-identified from its head (split.py): a 2 GB whole-slide
# or tomosynthesis instance costs no more memory than a CT slice. Read as files.LARGE_FILE_BYTES.
LARGE_FILE_BYTES = 64 * 1024 * 1024
