"""The DICOM layer: pure library (pydicom, pynetdicom, numpy, Pillow, httpx). Never imports Django.

Django apps hand it plain peers (`RemoteAE`, `DicomWebEndpoint`, `LocalAE`) and get back plain
results or typed `DicomError`s. `tests/dicom/test_no_django_import.py` guards the boundary.
"""
