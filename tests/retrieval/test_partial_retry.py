"""Retries fetch only what is missing, against a real Orthanc (private: its storage cache off, so a file hidden
from it is really gone) and the real receiver process. A series the PACS cannot send (its files hidden) fails
the row with the other series filed and counted; once the PACS has it again, the retry moves that series only
(a SERIES-level C-MOVE), keeps the files already filed, and the attempts say what each fetched. Instances
missing from a case folder are fetched at IMAGE level, as a list of SOP Instance UIDs, and nothing else."""
import os
import re
import threading
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE

from apps.catalog.models import Instance
from apps.jobs import runner
from apps.retrieval import moves
from apps.retrieval.models import MoveKey, RetrievalItem, RetrievalJob
from apps.retrieval.report import build_report
from apps.servers.models import DicomServer
from tests.pacs import Orthanc
from tests.receiver_process import receiver_process
from tests.retrieval.test_integrity import filed, run, staged_left

pytestmark = pytest.mark.django_db(transaction=True)
PORTAL_AE = "PORTALRESUME"
SERIES, PER_SERIES = 3, 4


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    """A private Orthanc holding one study of three series of four instances."""
    from apps.dicom.demo.synthetic import write_dataset

    root = tmp_path_factory.mktemp("resume-orthanc")
    manifest = write_dataset(root / "dataset", patients=1, studies=1, series=SERIES, instances=PER_SERIES, seed=23,
                             modalities=("CT",), id_prefix="RES")
    server = Orthanc(root / "server", aet="RESUMEPACS", extra_config={"MaximumStorageCacheSize": 0}).start()
    server.load(root / "dataset")
    series: dict[str, set[str]] = {}
    for path in (root / "dataset").rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        series.setdefault(str(ds.SeriesInstanceUID), set()).add(str(ds.SOPInstanceUID))
    server.study_uid, server.series = manifest["studies"][0]["StudyInstanceUID"], series
    yield server
    server.stop()


@pytest.fixture
def receiver(settings, tmp_path, pacs):
    with receiver_process(settings, tmp_path, pacs, PORTAL_AE) as port:
        yield port


def hidden_files(pacs, sops: set[str]) -> list[Path]:
    """The storage files of these instances in the PACS (hiding them makes it fail to send them)."""
    paths = []
    for sop in sops:
        (found,) = pacs.find("Instance", {"SOPInstanceUID": sop})
        uuid = pacs.rest("GET", f"/instances/{found['ID']}/attachments/dicom/info").json()["Uuid"]
        paths.append(pacs.workdir / "storage" / uuid[:2] / uuid[2:4] / uuid)
    return paths


def store_as(calling_ae: str, port: int, ds, message_id: int) -> int:
    """One C-STORE to our receiver calling as `calling_ae`, under a move's key; its status."""
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(str(ds.SOPClassUID), ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    assoc = ae.associate("127.0.0.1", port, ae_title=PORTAL_AE)
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(ds, originator_aet=PORTAL_AE, originator_id=message_id).Status)
    finally:
        assoc.release()


class MoveLog:
    """Records every C-MOVE's level and identifier, then runs it."""

    def __init__(self, monkeypatch):
        self.real, self.moves, self.lock = moves.c_move, [], threading.Lock()
        monkeypatch.setattr(moves, "c_move", self)

    def __call__(self, peer, local, query, destination_ae, *, level, **kw):
        with self.lock:
            self.moves.append((level, dict(query)))
        return self.real(peer, local, query, destination_ae, level=level, **kw)


def job_of(pacs, max_associations: int) -> RetrievalJob:
    peer = pacs.peer()
    server = DicomServer.objects.get_or_create(name="RESUME", defaults=dict(
        ae_title=peer.ae_title, host=peer.host, port=peer.port, retries=0, max_associations=max_associations))[0]
    job = RetrievalJob.objects.create(source_name="resume")
    RetrievalItem.objects.create(job=job, line=1, dicom_server=server, server_name=server.name,
                                 study_instance_uid=pacs.study_uid)
    return job


def test_a_series_the_pacs_refused_is_all_a_retry_moves(pacs, receiver, settings, monkeypatch):
    refused_series = sorted(pacs.series)[1]
    refused, others = pacs.series[refused_series], set().union(*pacs.series.values()) - pacs.series[refused_series]
    files = hidden_files(pacs, refused)
    for path in files:
        os.rename(path, f"{path}.hidden")
    try:
        job = run(job_of(pacs, 3))  # series moved on three associations: the PACS refuses one of them
    finally:
        for path in files:
            os.rename(f"{path}.hidden", path)
    item = job.items.get()
    assert item.status == "failed", "a series the PACS could not send fails the row"
    assert filed(settings) == others, "the series that came whole are filed"
    assert item.instances == len(others) == 8 and item.result["attempts"][0]["fetched"] == 8

    log = MoveLog(monkeypatch)
    RetrievalJob.objects.get(pk=job.pk).retry_failed()
    runner.run_item(RetrievalItem._meta.label, item.pk)
    item.refresh_from_db()
    assert item.status == "succeeded", item.error
    assert filed(settings) == others | refused and item.instances == item.expected == SERIES * PER_SERIES
    # the catalog holds every filed instance once: the kept ones from the first run, the retry's from the second
    assert sorted(Instance.objects.values_list("sop_instance_uid", flat=True)) == sorted(others | refused)
    assert log.moves == [("SERIES", {"StudyInstanceUID": pacs.study_uid, "SeriesInstanceUID": refused_series})]
    second = item.result["attempts"][1]
    assert (second["attempt"], second["fetched"], second["kept"]) == (2, PER_SERIES, 8)
    assert 0 < second["bytes"] < item.bytes / 2, "the retry moved one series' bytes, not the study's"
    (row,) = build_report(RetrievalJob.objects.get(pk=job.pk))["succeeded"]
    assert re.fullmatch(r"1: 8 fetched, [0-9.]+ MB; 2: 4 fetched, 8 kept, [0-9.]+ MB", row["attempts"]), row
    assert staged_left(settings) == [] and not MoveKey.objects.exists()


def test_instances_missing_from_the_case_folder_are_fetched_at_image_level(pacs, receiver, settings, monkeypatch):
    item = run(job_of(pacs, 1)).items.get()
    assert item.status == "succeeded", item.error
    folder = Path(settings.DOWNLOADS_DIR) / item.path
    series = sorted(pacs.series)[0]
    lost = sorted(pacs.series[series])[:2]  # as after a timeout that cut the move short
    for sop in lost:
        (folder / f"{sop}.dcm").unlink()
    log = MoveLog(monkeypatch)
    again = run(job_of(pacs, 1)).items.get()
    assert again.status == "succeeded", again.error
    assert [(level, query["SOPInstanceUID"].split("\\")) for level, query in log.moves] == [("IMAGE", lost)]
    assert filed(settings) == set().union(*pacs.series.values())
    assert again.result["attempts"] == [{"attempt": 1, "fetched": 2, "kept": SERIES * PER_SERIES - 2,
                                         "bytes": again.result["attempts"][0]["bytes"]}]
    assert again.instances == again.expected == SERIES * PER_SERIES


def test_a_study_filed_whole_is_not_moved_again(pacs, receiver, settings, monkeypatch):
    assert run(job_of(pacs, 1)).items.get().status == "succeeded"
    log = MoveLog(monkeypatch)
    again = run(job_of(pacs, 1)).items.get()
    assert again.status == "succeeded" and log.moves == []
    assert again.instances == SERIES * PER_SERIES and again.result["attempts"][0]["fetched"] == 0


def test_a_forged_instance_on_a_retry_quarantines_what_the_retry_moved_and_keeps_what_was_verified(
        pacs, receiver, settings, monkeypatch):
    item = run(job_of(pacs, 1)).items.get()
    folder = Path(settings.DOWNLOADS_DIR) / item.path
    series = sorted(pacs.series)[2]
    for sop in pacs.series[series]:
        (folder / f"{sop}.dcm").unlink()
    kept = {p.stem for p in folder.glob("*.dcm")}
    other = pydicom.dcmread(next(folder.glob("*.dcm")))
    other.SOPInstanceUID = other.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.99.1"
    real = moves.c_move

    def forge(peer, local, query, destination_ae, *, level, message_id, **kw):
        # a peer with the PACS's AE title and this move's live key slips in an instance of another series
        forged.append(store_as(pacs.aet, receiver, other, message_id))
        return real(peer, local, query, destination_ae, level=level, message_id=message_id, **kw)

    forged = []
    monkeypatch.setattr(moves, "c_move", forge)
    again = run(job_of(pacs, 1)).items.get()
    assert forged == [0x0000] and again.status == "failed" and "quarantined" in again.error
    assert {p.stem for p in folder.glob("*.dcm")} == kept, "the verified series stay; nothing of the retry is filed"
    quarantined = {p.stem for p in Path(settings.QUARANTINE_DIR).rglob("*.dcm")}
    assert quarantined == pacs.series[series] | {"1.2.826.0.1.3680043.99.1"}
