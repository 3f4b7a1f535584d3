"""Faults that must leave the right trace on the row (a real demo PACS over C-GET, or a real Orthanc refusing a
C-MOVE): a disk filling up while a study is filed takes back what it wrote or names what stayed, an unwritable
staging folder and a PACS's refusal are named on the item with the reason at INFO, and the INFO lines never
name the case folder (it holds the PatientID). Plus the receiver's keeping mode for plain C-STOREs: its quota
and its age cleanup."""
import errno
import logging
import os
import types
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian

from apps.dicom.demo.qrscp import DemoPACS
from apps.dicom.demo.synthetic import write_dataset
from apps.dicom.peers import LocalAE
from apps.dicom.staging import MoveStaging
from apps.dicom.wire.storage_scp import LeanStorageSCP
from apps.retrieval import layout
from apps.retrieval.models import RetrievalItem, RetrievalJob
from apps.retrieval.receiving import ReceiverPolicy, staging_writer
from apps.servers.models import DicomServer
from tests.fixtures_common import own_data_folders, unused_port
from tests.retrieval.test_integrity import run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def demo(tmp_path, settings):
    own_data_folders(settings, tmp_path)
    manifest = write_dataset(tmp_path / "pacs", patients=1, studies=1, instances=6, modalities=("CT",),
                             id_prefix="FAULT")
    with DemoPACS(tmp_path / "pacs", ae_title="FAULTPACS") as pacs:
        server = DicomServer.objects.create(name="FLT", ae_title="FAULTPACS", host="127.0.0.1", port=pacs.port,
                                            retries=0, retrieve_method="c-get")
        yield server, manifest["studies"][0]


def row_of(server, study) -> RetrievalJob:
    job = RetrievalJob.objects.create(source_name="faults")
    RetrievalItem.objects.create(job=job, line=1, dicom_server=server, server_name=server.name,
                                 study_instance_uid=study["StudyInstanceUID"])
    return job


def filling_disk(monkeypatch, after: int):
    """The downloads disk fills up: the filing's rename of the (after+1)-th instance fails with ENOSPC."""
    calls = []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) > after:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return os.replace(src, dst)

    monkeypatch.setattr(layout, "os", types.SimpleNamespace(**{**vars(os), "replace": replace}))
    # filed file by file, as on a file system without renameat2's RENAME_NOREPLACE: a staging folder renamed
    # whole into a new case folder (layout._take_whole) writes nothing a full disk could stop halfway
    monkeypatch.setattr(layout, "rename_new", lambda source, target: False)


def info_lines(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)


def test_a_disk_filling_up_while_filing_takes_back_what_it_wrote(demo, monkeypatch, settings, caplog):
    server, study = demo
    filling_disk(monkeypatch, after=4)
    caplog.set_level(logging.DEBUG)
    item = run(row_of(server, study)).items.get()
    assert item.status == "failed", item.error
    assert "No space left on device" in item.error and "nothing of it was kept" in item.error, item.error
    assert list(Path(settings.DOWNLOADS_DIR).rglob("*.dcm")) == [], "the four filed before the fault are gone"
    assert not (Path(settings.DOWNLOADS_DIR) / "FLT").exists() or not any((Path(settings.DOWNLOADS_DIR) / "FLT")
                                                                         .iterdir())
    assert study["PatientID"] not in info_lines(caplog), "the case folder (its PatientID) only at DEBUG"
    assert "No space left on device" in info_lines(caplog)


def test_what_could_not_be_taken_back_is_named(demo, monkeypatch, settings):
    server, study = demo
    filling_disk(monkeypatch, after=3)
    downloads, real_unlink = str(settings.DOWNLOADS_DIR), Path.unlink

    def stuck_unlink(self, missing_ok=False):
        if str(self).startswith(downloads):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", stuck_unlink)
    item = run(row_of(server, study)).items.get()
    stayed = sorted(p.name for p in Path(settings.DOWNLOADS_DIR).rglob("*.dcm"))
    assert item.status == "failed" and len(stayed) == 3
    assert "3 files of it could not be taken back and stayed in the folder" in item.error, item.error
    assert all(name in item.error for name in stayed)


def test_an_unwritable_staging_folder_is_named_on_the_item_with_the_reason_at_info(demo, settings, caplog):
    server, study = demo
    blocker = Path(settings.STAGING_DIR).parent / "not-a-folder"
    blocker.write_text("a file where the staging folder's parent should be")
    settings.STAGING_DIR = blocker / "staging"
    caplog.set_level(logging.INFO)
    item = run(row_of(server, study)).items.get()
    assert item.status == "failed"
    assert f"The staging folder {settings.STAGING_DIR} is not writable (Not a directory)" in item.error, item.error
    assert "nothing was retrieved" in item.error
    assert "is not writable: Not a directory" in info_lines(caplog)
    assert list(Path(settings.DOWNLOADS_DIR).rglob("*.dcm")) == []


def test_a_pacs_refusing_the_move_is_named_on_the_item_with_the_reason_at_info(orthanc, orthanc_dataset, settings,
                                                                                tmp_path, caplog):
    """Our receiver is up, but its AE title is not declared in this Orthanc: it refuses the C-MOVE, and
    the row says the PACS refused, not that our receiver is down."""
    settings.DICOM_AE_TITLE, settings.DICOM_PORT = "NOTDECLARED", unused_port()
    own_data_folders(settings, tmp_path)
    peer = orthanc.peer()
    server = DicomServer.objects.create(name="REFUSER", ae_title=peer.ae_title, host=peer.host, port=peer.port,
                                        retries=0)
    caplog.set_level(logging.INFO)
    with LeanStorageSCP(LocalAE(ae_title="NOTDECLARED", port=settings.DICOM_PORT), lambda instance: 0):
        item = run(row_of(server, orthanc_dataset["studies"][0])).items.get()
    assert item.status == "failed" and "failure status 0xC000" in item.error, item.error
    assert "Check that NOTDECLARED is declared on the PACS" in item.error and "receiver" not in item.error
    refusal = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO and "failed on the PACS" in
               r.getMessage()]
    assert refusal and "0xC000" in refusal[0] and refusal[0].startswith("line 1, REFUSER")


def plain_stores(port: int, datasets) -> list[int]:
    from pynetdicom import AE

    ae = AE(ae_title="KEEPER")
    ae.add_requested_context(str(datasets[0].SOPClassUID), ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="KEEPRCV")
    assert assoc.is_established, "the receiver did not accept the association"
    try:  # None: no answer (the association was aborted or timed out), said as such in the assertion
        return [getattr(assoc.send_c_store(ds), "Status", None) for ds in datasets]
    finally:
        assoc.release()


def test_kept_unsolicited_stores_stay_within_their_quota_and_go_after_their_days(tmp_path, settings, db):
    settings.RECEIVER_KEEP_UNSOLICITED_MB, settings.RECEIVER_UNSOLICITED_DAYS = 1, 7
    settings.RECEIVER_ALLOWED_AE_TITLES = ["KEEPER"]
    write_dataset(tmp_path / "files", patients=1, studies=1, instances=8, rows=256, cols=256, modalities=("CT",),
                  id_prefix="KEEP")  # about 130 kB each
    datasets = [pydicom.dcmread(p) for p in sorted((tmp_path / "files").rglob("*.dcm"))]
    size = len((sorted((tmp_path / "files").rglob("*.dcm"))[0]).read_bytes())
    fit = 1_000_000 // (size + 400)  # what the quota holds (the file meta adds a little)
    own_data_folders(settings, tmp_path)  # the writer's disk-floor look is at the folder it stages in
    staging = MoveStaging(settings.STAGING_DIR)
    writer = staging_writer(staging, ReceiverPolicy("KEEPRCV"))
    with LeanStorageSCP(LocalAE(ae_title="KEEPRCV", port=0), writer) as scp:
        statuses = plain_stores(scp.port, datasets)
        kept = list((settings.STAGING_DIR / "_unsolicited" / "KEEPER").glob("*.dcm"))
        assert 0 < fit < len(datasets) and statuses == [0] * fit + [0xA700] * (len(datasets) - fit), statuses
        assert len(kept) == fit, "over the quota: refused as out of resources, not written"
        old = kept[0]
        os.utime(old, (old.stat().st_atime, old.stat().st_mtime - 8 * 86400))
        assert writer.quota.sweep() == 1 and not old.exists(), "past its days: removed"
        assert plain_stores(scp.port, datasets[fit:fit + 1]) == [0], "its room is free again"
