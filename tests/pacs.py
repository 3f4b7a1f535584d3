"""A real PACS for tests: the Debian `Orthanc` binary on free loopback ports, with a generated config
(after ../shared/pacs-lab/start-orthanc.sh), its DICOMweb plugin, and a small REST helper.

Orthanc 1.10 has no bind address: both ports listen on all interfaces. RemoteAccessAllowed=false keeps
HTTP to localhost; the DICOM port is acceptable on these sandboxed test machines only.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pydicom
from pydicom.filebase import DicomBytesIO

from apps.dicom.peers import DicomWebEndpoint, RemoteAE

DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all bound at once so they differ, then released)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def dataset_part(part10: bytes) -> bytes:
    """The encoded dataset after preamble and file meta: what travels in a C-STORE. Two files with the
    same dataset part hold the same bytes, whatever their file meta says about who wrote them."""
    meta_length = pydicom.dcmread(DicomBytesIO(part10), stop_before_pixels=True).file_meta.FileMetaInformationGroupLength
    return part10[132 + 12 + meta_length:]  # preamble + DICM, the group length element, the rest of group 2


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Orthanc:
    def __init__(self, workdir: str | os.PathLike, *, aet: str = "ORTHANC", extra_config: dict | None = None):
        self.workdir = Path(workdir)
        self.aet = aet
        self.extra_config = extra_config or {}
        self.dicom_port = self.http_port = 0
        self.process: subprocess.Popen | None = None
        self._http: httpx.Client | None = None
        self.dataset: dict | None = None  # manifest of the data loaded by the test fixture, if any

    @property
    def log_path(self) -> Path:
        return self.workdir / "orthanc.log"

    def config(self) -> dict:
        storage = self.workdir / "storage"
        return {
            "Name": "pacsportal-test",
            "StorageDirectory": str(storage), "IndexDirectory": str(storage),
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "WadoRoot": "/wado"},
            "HttpServerEnabled": True, "HttpPort": self.http_port,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "DicomServerEnabled": True, "DicomAet": self.aet, "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True,  # so a wrong called AE title is rejected, as a strict PACS does
            "DicomAlwaysAllowEcho": True, "DicomAlwaysAllowStore": True, "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowFindWorklist": True, "DicomAlwaysAllowGet": True, "DicomAlwaysAllowMove": True,
            "DicomCheckModalityHost": False,
            "DicomModalities": {},  # C-MOVE destinations: tests declare theirs with add_modality()
            "SaveJobs": False,
            **self.extra_config,
        }

    def start(self) -> "Orthanc":
        """Start on fresh free ports; a port taken between choosing and binding gets one more try."""
        last_error = None
        for _ in range(3):
            try:
                return self._start_once()
            except RuntimeError as exc:
                last_error = exc
                self.stop()
        raise last_error

    def _start_once(self) -> "Orthanc":
        self.dicom_port, self.http_port = free_ports(2)
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "orthanc.json"
        config_path.write_text(json.dumps(self.config(), indent=1))
        env = {**os.environ, "TCP_NODELAY": "1"}  # DCMTK inside Orthanc leaves Nagle on otherwise
        self.process = subprocess.Popen(["Orthanc", f"--logfile={self.log_path}", str(config_path)], env=env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        self._http = httpx.Client(base_url=f"http://127.0.0.1:{self.http_port}", timeout=30.0)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode} during start-up.\n{self.log_tail()}")
            if self._answers() and port_open(self.dicom_port):
                return self
            time.sleep(0.1)
        raise RuntimeError(f"Orthanc did not answer within {START_TIMEOUT:g} s.\n{self.log_tail()}")

    def _answers(self) -> bool:
        try:
            return self._http.get("/system").status_code == 200
        except httpx.TransportError:
            return False

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no Orthanc log)"

    @contextlib.contextmanager
    def frozen(self):
        """The PACS stopped in its tracks (SIGSTOP) and thawed afterwards (SIGCONT): what a test kills in
        between is killed while a transfer is still under way, however fast that transfer otherwise is."""
        os.kill(self.process.pid, signal.SIGSTOP)
        try:
            yield self
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    # --- REST -----------------------------------------------------------------------------------
    def rest(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.RemoteProtocolError:
            # Orthanc closes an idle keep-alive connection after its timeout; a request sent on it as it
            # closes gets no answer ("Server disconnected without sending a response"). Asked again on a new
            # connection, once, where asking twice is harmless.
            if method not in ("GET", "HEAD", "PUT", "DELETE"):
                raise
            response = self._http.request(method, path, **kwargs)
        response.raise_for_status()
        return response

    def find(self, level: str, query: dict) -> list[dict]:
        """/tools/find (level Patient/Study/Series/Instance), expanded."""
        return self.rest("POST", "/tools/find", json={"Level": level, "Query": query, "Expand": True}).json()

    def instances(self) -> set[str]:
        return {i["MainDicomTags"]["SOPInstanceUID"] for i in self.rest("GET", "/instances?expand").json()}

    def study_instances(self, study_instance_uid: str) -> set[str]:
        found = self.find("Instance", {"StudyInstanceUID": study_instance_uid})
        return {i["MainDicomTags"]["SOPInstanceUID"] for i in found}

    def add_modality(self, name: str, aet: str, port: int, host: str = "127.0.0.1") -> None:
        """Declare a C-MOVE destination at run time (Orthanc refuses moves to unknown AE titles)."""
        self.rest("PUT", f"/modalities/{name}", json={"AET": aet, "Host": host, "Port": port})

    def delete_all(self) -> None:
        for patient in self.rest("GET", "/patients").json():
            self.rest("DELETE", f"/patients/{patient}")

    # --- what the portal sees ------------------------------------------------------------------
    def peer(self, **overrides) -> RemoteAE:
        values = {"ae_title": self.aet, "host": "127.0.0.1", "port": self.dicom_port, "name": "ORTHANC",
                  "connect_timeout": 5.0, "query_timeout": 10.0, "retrieve_timeout": 60.0}
        return RemoteAE(**{**values, **overrides})

    def dicomweb(self, **overrides) -> DicomWebEndpoint:
        values = {"base_url": f"http://127.0.0.1:{self.http_port}/dicom-web", "name": "ORTHANC", "timeout": 30.0}
        return DicomWebEndpoint(**{**values, **overrides})

    def load(self, folder: str | os.PathLike) -> None:
        """storescu (DCMTK, one association) of every *.dcm under folder: the fast way to fill a PACS."""
        storescu = shutil.which("storescu")
        if storescu is None:
            raise RuntimeError("storescu not found: apt-get install dcmtk")
        command = [storescu, "-aec", self.aet, "-R", "-nh", "+sd", "+r", "+sp", "*.dcm", "127.0.0.1",
                   str(self.dicom_port), str(folder)]
        done = subprocess.run(command, env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True, text=True,
                              timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"storescu failed ({done.returncode}): {done.stderr[-2000:]}")


class Collector:
    """A retrieval's on_instance callback that keeps every instance it is handed (from any thread) and
    answers success."""

    def __init__(self):
        self.instances, self.lock = [], threading.Lock()

    def __call__(self, instance):
        with self.lock:
            self.instances.append(instance)
        return 0x0000


def slow_retrieve_answers(event, seen: dict, *, count: int = 100, every: float = 0.5):
    """The sub-operations of a C-MOVE/C-GET handler for a slow PACS: announce `count` instances, send a
    small CT one every `every` seconds, and stop with 0xFE00 (noting seen["cancelled"]) on C-CANCEL."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    from pynetdicom.sop_class import CTImageStorage

    yield count
    for _ in range(count):
        if event.is_cancelled:
            seen["cancelled"] = True
            yield 0xFE00, None
            return
        time.sleep(every)
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID, ds.PatientID = CTImageStorage, generate_uid(), "SLOW"
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        yield 0xFF00, ds
