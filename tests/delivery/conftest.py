"""Delivery fixtures: retrieved cases on disk (real DICOM files in the download layout, owned by a
finished retrieval job), a receiving portal (the portal under test itself, served by live_server,
unpacking into its own downloads folder), an uploader account with a token, and a TCP proxy that cuts
the connection once after N bytes."""
import hashlib
import shutil
import socket
import threading
from pathlib import Path

import pytest

from apps.dicom.demo.synthetic import write_dataset
from apps.jobs import runner
from apps.jobs.models import ItemStatus


@pytest.fixture
def uploader(db, django_user_model):
    """A receiving-portal account allowed to upload, and its API token."""
    from django.contrib.auth.models import Permission
    from rest_framework.authtoken.models import Token

    account = django_user_model.objects.create_user(username="far-site", password="far-site-pass-1")
    account.user_permissions.add(Permission.objects.get(codename="add_upload"))
    account.token = Token.objects.create(user=account).key
    return account


@pytest.fixture
def trusted_loopback(settings):
    """The suite's receiving portals and PACS listen on loopback over plain http: trust them, as an
    operator would list a portal on the same machine in TRUSTED_HTTP_HOSTS."""
    settings.TRUSTED_HTTP_HOSTS = ["127.0.0.1", "localhost"]


class InServerThreads:
    """True in the live server's request threads only: django-q2 runs the tasks the receiving portal
    queues (its unpacking) at once, as if its worker took them immediately, while the sending side's
    jobs stay queued for the test to run in order (run_released)."""

    def __bool__(self) -> bool:
        return threading.current_thread() is not threading.main_thread()


@pytest.fixture
def unpack_at_once(monkeypatch):
    """The receiving portal's worker, without a process: see InServerThreads. test_attacks.py and
    test_tus_client.py show the unpacking is queued off the request and the sender waits for it."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", InServerThreads())


@pytest.fixture
def receiving(settings, tmp_path, live_server, trusted_loopback, unpack_at_once):
    """The receiving portal: this portal over HTTP, with its own downloads and uploads folders; what the
    uploader account sends lands in its folder under received/."""
    settings.DOWNLOADS_DIR = tmp_path / "received"
    settings.UPLOADS_DIR = tmp_path / "uploads"
    settings.DELIVERY_ZIP_DIR = tmp_path / "zips"
    live_server.downloads = settings.DOWNLOADS_DIR / "received" / "far-site"
    return live_server


def sha1_tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*.dcm"))}


def make_retrieval(user, source: Path, dataset_dir: Path, *, patients: int = 3, studies: int = 2,
                   instances: int = 5, rows: int = 64, server=None):
    """A finished retrieval job whose succeeded rows (one per study) have their files in `source` laid
    out as the retrieval app files them: <SERVER>/<YYYYMMDD>_<PatientID>_<Modality>/<SOP>.dcm."""
    from apps.retrieval.models import RetrievalItem, RetrievalJob
    from apps.servers.models import DicomServer

    manifest = write_dataset(dataset_dir, patients=patients, studies=studies, series=1, instances=instances,
                             rows=rows, cols=rows, seed=11, id_prefix="DLV", first_date="2022-05-01")
    server = server or DicomServer.objects.get_or_create(
        name="LK", defaults=dict(ae_title="LK", host="127.0.0.1", port=104))[0]
    job = RetrievalJob.objects.create(created_by=user, source_name="cases.csv", output_dir=str(source),
                                      status="succeeded")
    import pydicom

    by_study: dict[str, list[Path]] = {}
    for path in sorted(Path(dataset_dir).rglob("*.dcm")):
        uid = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID"]).StudyInstanceUID
        by_study.setdefault(str(uid), []).append(path)
    for line, study in enumerate(manifest["studies"], start=2):
        folder = source / server.name / f"{study['StudyDate']}_{study['PatientID']}_{study['Modality']}"
        folder.mkdir(parents=True, exist_ok=True)
        for path in by_study[study["StudyInstanceUID"]]:
            sop = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID
            shutil.copyfile(path, folder / f"{sop}.dcm")
        RetrievalItem.objects.create(
            job=job, line=line, patient_id=study["PatientID"], study_date=study["StudyDate"],
            modality=study["Modality"], dicom_server=server, server_name=server.name, status=ItemStatus.SUCCEEDED,
            study_instance_uid=study["StudyInstanceUID"], expected=instances, instances=instances,
            path=str(folder.relative_to(source)),
            result={"studies": [{"StudyInstanceUID": study["StudyInstanceUID"], "folder": str(folder)}]})
    return job


@pytest.fixture
def retrieved(user, tmp_path):
    """6 cases (3 patients x 2 studies, 5 instances each) retrieved into tmp_path/source."""
    source = tmp_path / "source"
    job = make_retrieval(user, source, tmp_path / "dataset")
    job.source = source
    return job


def run_released(job) -> None:
    """Run every batch that was released (created: its cases are done) in this process, in order, until
    none is left pending (what a worker does with the queue)."""
    from apps.delivery.models import DeliveryBatch

    while True:
        batch = DeliveryBatch.objects.filter(job=job, status=ItemStatus.PENDING).order_by("number").first()
        if batch is None:
            break
        runner.run_item(batch._meta.label, batch.pk, continue_with_job=False)
    job.refresh_from_db()


class CuttingProxy:
    """A loopback TCP proxy that closes the connection on which the client's `cut_after`-th byte
    travels (once, mid-request), and counts every byte it forwarded to the server."""

    def __init__(self, target_port: int, cut_after: int, on_cut=None):
        self.target_port, self.cut_after, self.on_cut = target_port, cut_after, on_cut
        self.forwarded = 0
        self.cuts = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        self.server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source, sink, upstream_bound: bool):
        try:
            while data := source.recv(65536):
                if upstream_bound:
                    with self._lock:
                        if self.cuts == 0 and self.forwarded + len(data) > self.cut_after:
                            keep = self.cut_after - self.forwarded
                            sink.sendall(data[:keep])
                            self.forwarded += keep
                            self.cuts += 1
                            if self.on_cut:
                                self.on_cut()
                            raise ConnectionAbortedError("cut")
                        self.forwarded += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self):
        self._stop.set()
        self.server.close()
        for s in self._conns:
            try:
                s.close()
            except OSError:
                pass


@pytest.fixture
def cutting_proxy(receiving):
    proxies = []

    def make(cut_after: int, on_cut=None) -> CuttingProxy:
        proxy = CuttingProxy(int(receiving.url.rsplit(":", 1)[1]), cut_after, on_cut)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()
