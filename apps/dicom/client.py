"""PacsClient: a small facade over the DICOM layer for scripts, shaped like the old transfer tool's
class (send a file, send a folder, query, retrieve a study) so a script that used it changes little:

    from apps.dicom.client import PacsClient

    pacs = PacsClient("192.168.1.100", 11112, pacs_ae_title="PACS", ae_title="MY_APP")
    pacs.send_file("image1.dcm")                      # True when the PACS stored it
    report = pacs.send_dir("dicom_files/")            # StoreReport: stored, warnings, failed (path, reason)
    studies = pacs.query({"QueryRetrieveLevel": "STUDY", "PatientID": "P12345"})
    result = pacs.retrieve_study("1.2.3.4", "out/")   # C-GET: files land as out/<SOPInstanceUID>.dcm

It needs no Django, no database and no receiver (retrieval uses C-GET on the client's own
association). Errors are the layer's typed DicomError with a message naming the PACS.
"""
from __future__ import annotations

import os
from pathlib import Path

from apps.dicom import dimse
from apps.dicom.errors import InvalidDicomFile
from apps.dicom.outcomes import MoveResult
from apps.dicom.peers import LocalAE, RemoteAE
from apps.dicom.scu import c_get
from apps.dicom.staged import write_atomically
from apps.dicom.staging import safe_uid
from apps.dicom.store import StoreReport, store_files


class PacsClient:
    def __init__(self, host: str = "127.0.0.1", port: int = 11112, pacs_ae_title: str = "PACS",
                 ae_title: str = "PYNETDICOM", timeout: float = 30.0):
        self.peer = RemoteAE(ae_title=pacs_ae_title, host=host, port=int(port), query_timeout=timeout,
                             retrieve_timeout=max(timeout, 120.0), connect_timeout=min(timeout, 10.0))
        self.local = LocalAE(ae_title=ae_title)

    def send_file(self, path: str | os.PathLike) -> bool:
        """C-STORE one file; True when the PACS stored it (a warning status counts as stored)."""
        report = self.send_files([path])
        return report.landed == 1

    def send_dir(self, folder: str | os.PathLike) -> StoreReport:
        """C-STORE every file under `folder` (recursively); non-DICOM files are in report.failed."""
        if not Path(folder).is_dir():
            raise InvalidDicomFile(f"{folder}: not a folder")
        return self.send_files([folder])

    def send_files(self, paths) -> StoreReport:
        return store_files(self.peer, self.local, paths)

    def query(self, query: dict) -> list[dict]:
        """C-FIND (Study Root). `query` holds QueryRetrieveLevel (default STUDY) and the keys to match;
        the keys become the return keys too. Each match comes back as a plain {keyword: value} dict."""
        keys = dict(query)
        level = str(keys.pop("QueryRetrieveLevel", "STUDY"))
        for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate"):
            keys.setdefault(keyword, "")
        matches = dimse.find(self.peer, self.local, level, keys)
        return [{element.keyword: _plain(element.value) for element in ds if element.keyword} for ds in matches]

    def retrieve_study(self, study_instance_uid: str, output_dir: str | os.PathLike) -> MoveResult:
        """C-GET one study into `output_dir` as <SOPInstanceUID>.dcm, each file as the bytes received
        (malformed instances are refused before they reach the disk)."""
        folder = Path(output_dir)
        folder.mkdir(parents=True, exist_ok=True)

        def save(instance) -> int:
            write_atomically(folder / f"{safe_uid(instance.sop_instance_uid)}.dcm", instance.chunks)
            instance.written()
            return 0x0000

        return c_get(self.peer, self.local, {"StudyInstanceUID": safe_uid(study_instance_uid)}, save)

    # the old tool's method names
    send_dicom_file = send_file
    query_pacs = query


def _plain(value):
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value]
    if isinstance(value, (int, float)):
        return value
    return "" if value is None else str(value)
