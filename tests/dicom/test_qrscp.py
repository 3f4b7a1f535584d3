"""DemoPACS driven by the reference DCMTK tools (echoscu, findscu, movescu, getscu, storescu) as subprocesses.

Dataset (written once): 3 patients x 2 studies x 2 series x 3 instances, 64x64, studies dated 2023-01-01
onwards one day apart; modalities cycle CT, MR, US:
  PAT00001: CT 20230101, MR 20230102   PAT00002: US 20230103, CT 20230104   PAT00003: MR 20230105, US 20230106
"""
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from apps.dicom.demo.qrscp import DemoPACS
from apps.dicom.demo.synthetic import write_dataset
from tests.fixtures_common import unused_port

ROOT = Path(__file__).resolve().parents[2]
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def dcmtk(*args, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], env=DCMTK_ENV, capture_output=True, text=True, timeout=20)
    if check:
        assert result.returncode == 0, result.stderr + result.stdout
    return result


def dataset_bytes(path) -> bytes:
    """The encoded dataset after the Part-10 header: what a PACS must pass on unchanged."""
    raw = Path(path).read_bytes()
    meta = pydicom.filereader.read_file_meta_info(path)
    return raw[132 + 12 + meta.FileMetaInformationGroupLength:]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo-pacs")
    manifest = write_dataset(folder, patients=3, studies=2, series=2, instances=3, first_date="20230101")
    return folder, manifest


@pytest.fixture(scope="module")
def pacs(dataset):
    with DemoPACS(dataset[0]) as server:
        yield server


@pytest.fixture
def study_by_date(dataset):
    return {s["StudyDate"]: s for s in dataset[1]["studies"]}


def find(pacs, tmp_path, level, *keys, model="-S"):
    """findscu with the responses extracted to files, read back as datasets."""
    out = tmp_path / f"find-{len(list(tmp_path.iterdir()))}"
    out.mkdir()
    args = [f"QueryRetrieveLevel={level}", *keys]
    dcmtk("findscu", model, "-X", "-od", out, "-aec", "DEMO", *[a for k in args for a in ("-k", k)],
          "127.0.0.1", pacs.port)
    return [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def test_echo(pacs):
    dcmtk("echoscu", "-aec", "DEMO", "127.0.0.1", pacs.port)


def test_find_studies_by_patient_id_returns_only_requested_keys(pacs, tmp_path, dataset):
    found = find(pacs, tmp_path, "STUDY", "PatientID=PAT00002", "StudyInstanceUID", "StudyDate",
                 "ModalitiesInStudy", "NumberOfStudyRelatedInstances", "NumberOfStudyRelatedSeries")
    expected = {s["StudyInstanceUID"]: s for s in dataset[1]["studies"] if s["PatientID"] == "PAT00002"}
    assert {ds.StudyInstanceUID for ds in found} == set(expected)
    for ds in found:
        assert set(ds.dir()) == {"QueryRetrieveLevel", "SpecificCharacterSet", "PatientID", "StudyInstanceUID",
                                 "StudyDate", "ModalitiesInStudy", "NumberOfStudyRelatedInstances",
                                 "NumberOfStudyRelatedSeries"}
        study = expected[ds.StudyInstanceUID]
        assert (ds.StudyDate, ds.ModalitiesInStudy) == (study["StudyDate"], study["Modality"])
        assert (ds.NumberOfStudyRelatedSeries, ds.NumberOfStudyRelatedInstances) == (2, 6)
        assert ds.QueryRetrieveLevel == "STUDY"


@pytest.mark.parametrize("date_range, dates", [
    ("20230102-20230103", {"20230102", "20230103"}),
    ("-20230102", {"20230101", "20230102"}),
    ("20230105-", {"20230105", "20230106"}),
    ("20230104", {"20230104"}),
])
def test_find_studies_by_date_range(pacs, tmp_path, study_by_date, date_range, dates):
    found = find(pacs, tmp_path, "STUDY", f"StudyDate={date_range}", "StudyInstanceUID")
    assert sorted(ds.StudyInstanceUID for ds in found) == sorted(study_by_date[d]["StudyInstanceUID"] for d in dates)


@pytest.mark.parametrize("modalities, dates", [
    ("CT", {"20230101", "20230104"}),
    ("MR\\US", {"20230102", "20230103", "20230105", "20230106"}),
])
def test_find_studies_by_modality(pacs, tmp_path, study_by_date, modalities, dates):
    found = find(pacs, tmp_path, "STUDY", f"ModalitiesInStudy={modalities}", "StudyDate")
    assert sorted(ds.StudyDate for ds in found) == sorted(dates)


def test_find_with_wildcards_uid_lists_and_combined_keys(pacs, tmp_path, study_by_date):
    by_name = find(pacs, tmp_path, "STUDY", "PatientName=dubois*", "StudyDate")  # PN matches case-insensitively
    assert sorted(ds.StudyDate for ds in by_name) == ["20230103", "20230104"]
    by_id = find(pacs, tmp_path, "STUDY", "PatientID=PAT0000?", "StudyDate=20230101-20230103")
    assert sorted(ds.StudyDate for ds in by_id) == ["20230101", "20230102", "20230103"]
    uids = [study_by_date["20230101"]["StudyInstanceUID"], study_by_date["20230106"]["StudyInstanceUID"]]
    by_uids = find(pacs, tmp_path, "STUDY", "StudyInstanceUID=" + "\\".join(uids))
    assert sorted(ds.StudyInstanceUID for ds in by_uids) == sorted(uids)
    assert find(pacs, tmp_path, "STUDY", "PatientID=PAT00001", "ModalitiesInStudy=US") == []


def test_find_at_patient_series_and_image_level(pacs, tmp_path, study_by_date):
    patients = find(pacs, tmp_path, "PATIENT", "PatientID", "PatientName", "NumberOfPatientRelatedStudies",
                    model="-P")
    assert [(ds.PatientID, ds.NumberOfPatientRelatedStudies) for ds in sorted(patients, key=lambda d: d.PatientID)] \
        == [("PAT00001", 2), ("PAT00002", 2), ("PAT00003", 2)]
    study = study_by_date["20230105"]
    series = find(pacs, tmp_path, "SERIES", f"StudyInstanceUID={study['StudyInstanceUID']}", "SeriesInstanceUID",
                  "Modality", "NumberOfSeriesRelatedInstances")
    assert {ds.SeriesInstanceUID for ds in series} == {s["SeriesInstanceUID"] for s in study["Series"]}
    assert {(ds.Modality, ds.NumberOfSeriesRelatedInstances) for ds in series} == {("MR", 3)}
    one_series = study["Series"][1]["SeriesInstanceUID"]
    images = find(pacs, tmp_path, "IMAGE", f"SeriesInstanceUID={one_series}", "SOPInstanceUID", "InstanceNumber",
                  "PatientID=PAT00003", model="-P")
    assert sorted(ds.InstanceNumber for ds in images) == [1, 2, 3]
    assert len({ds.SOPInstanceUID for ds in images}) == 3


def test_find_at_a_level_the_model_lacks_is_refused(pacs):
    result = dcmtk("findscu", "-v", "-S", "-aec", "DEMO", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID",
                   "127.0.0.1", pacs.port)
    assert "DataSetDoesNotMatchSOPClass" in result.stderr + result.stdout


def test_move_delivers_exactly_the_study_as_stored(pacs, tmp_path, dataset, study_by_date):
    study = study_by_date["20230102"]
    receive_port = unused_port()
    pacs.add_destination("MOVER", "127.0.0.1", receive_port)
    dcmtk("movescu", "-S", "-aet", "MOVER", "-aec", "DEMO", "-aem", "MOVER", "+P", receive_port, "-od", tmp_path,
          "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study['StudyInstanceUID']}",
          "127.0.0.1", pacs.port)
    received = {pydicom.dcmread(p).SOPInstanceUID: p for p in tmp_path.iterdir()}
    originals = {pydicom.dcmread(p).SOPInstanceUID: p for p in (dataset[0] / "PAT00001" / "Study002").rglob("*.dcm")}
    assert set(received) == set(originals) and len(received) == 6
    assert all(dataset_bytes(received[uid]) == dataset_bytes(originals[uid]) for uid in originals)


def test_move_to_an_unknown_destination_fails_with_a801(pacs, study_by_date):
    result = dcmtk("movescu", "-S", "-aec", "DEMO", "-aem", "NOBODY", "-k", "QueryRetrieveLevel=STUDY",
                   "-k", f"StudyInstanceUID={study_by_date['20230101']['StudyInstanceUID']}",
                   "127.0.0.1", pacs.port, check=False)
    assert "MoveDestinationUnknown" in result.stderr + result.stdout


def test_move_sub_operations_carry_the_requestors_originator_and_nodelay(pacs, study_by_date):
    """The portal's receiver files moved instances by (Move Originator AE, Message ID): it must be the AE
    that asked for the move, not the PACS's own title. Every socket of the PACS disables Nagle."""
    seen, sockets_nodelay = [], []

    def on_store(event):
        seen.append((event.request.MoveOriginatorApplicationEntityTitle, event.request.MoveOriginatorMessageID))
        sockets_nodelay.extend(a.dul.socket.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                               for a in pacs.ae.active_associations if a.dul.socket)
        return 0x0000

    receiver = AE(ae_title="PORTAL")
    receiver.supported_contexts = StoragePresentationContexts
    server = receiver.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        pacs.add_destination("PORTAL", "127.0.0.1", server.server_address[1])
        dcmtk("movescu", "-S", "-aet", "ASKER", "-aec", "DEMO", "-aem", "PORTAL", "-k", "QueryRetrieveLevel=SERIES",
              "-k", f"SeriesInstanceUID={study_by_date['20230103']['Series'][0]['SeriesInstanceUID']}",
              "127.0.0.1", pacs.port)
    finally:
        server.shutdown()
    assert len(seen) == 3
    assert {ae for ae, _ in seen} == {"ASKER"} and len({msg_id for _, msg_id in seen}) == 1
    assert None not in {msg_id for _, msg_id in seen}
    assert sockets_nodelay and all(sockets_nodelay)  # the C-MOVE association and its sub-association


def test_get_delivers_every_instance_of_the_patient(pacs, tmp_path, dataset):
    dcmtk("getscu", "-P", "-aec", "DEMO", "-od", tmp_path, "-k", "QueryRetrieveLevel=PATIENT",
          "-k", "PatientID=PAT00002", "127.0.0.1", pacs.port)
    received = {pydicom.dcmread(p).SOPInstanceUID: p for p in tmp_path.iterdir()}
    originals = {pydicom.dcmread(p).SOPInstanceUID: p for p in (dataset[0] / "PAT00002").rglob("*.dcm")}
    assert set(received) == set(originals) and len(received) == 12
    assert all(dataset_bytes(received[uid]) == dataset_bytes(originals[uid]) for uid in originals)


def test_stored_instances_are_kept_as_received_and_become_queryable(tmp_path):
    incoming = write_dataset(tmp_path / "incoming", patients=1, instances=2, modalities=("MR",), seed=5,
                             id_prefix="NEW")
    files = sorted((tmp_path / "incoming").rglob("*.dcm"))
    with DemoPACS(tmp_path / "storage") as pacs:
        dcmtk("storescu", "-aec", "DEMO", "127.0.0.1", pacs.port, *files)
        found = find(pacs, tmp_path, "IMAGE", "PatientID=NEW00001", "SOPInstanceUID")
        assert {ds.SOPInstanceUID for ds in found} == {pydicom.dcmread(f).SOPInstanceUID for f in files}
        dcmtk("storescu", "-aec", "DEMO", "127.0.0.1", pacs.port, files[0])  # a re-send replaces, never duplicates
        assert len(find(pacs, tmp_path, "IMAGE", "PatientID=NEW00001", "SOPInstanceUID")) == 2
    stored = sorted((tmp_path / "storage").rglob("*.dcm"))
    assert sorted(dataset_bytes(p) for p in stored) == sorted(dataset_bytes(f) for f in files)
    with DemoPACS(tmp_path / "storage") as restarted:  # indexed again from disk on start
        study = incoming["studies"][0]["StudyInstanceUID"]
        assert [r["StudyInstanceUID"] for r in restarted.records()] == [study, study]


def test_acceptor_sockets_disable_nagle(pacs):
    scu = AE(ae_title="PROBE")
    scu.add_requested_context(Verification)
    assoc = scu.associate("127.0.0.1", pacs.port, ae_title="DEMO")
    try:
        assert assoc.is_established
        acceptors = [a for a in pacs.ae.active_associations if a.is_acceptor]
        assert acceptors and all(a.dul.socket.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                                 for a in acceptors)
    finally:
        assoc.release()


def test_only_loopback_addresses_are_accepted(tmp_path):
    with pytest.raises(ValueError, match="loopback"):
        DemoPACS(tmp_path, host="0.0.0.0")
    with pytest.raises(ValueError, match="loopback"):
        DemoPACS(tmp_path, destinations={"FAR": ("10.1.2.3", 104)})
    with pytest.raises(ValueError, match="loopback"):
        DemoPACS(tmp_path).add_destination("FAR", "pacs.example.org", 104)


def test_command_line_serves_until_sigterm(dataset):
    port = unused_port()
    proc = subprocess.Popen([sys.executable, "-m", "apps.dicom.demo.qrscp", "--dir", dataset[0], "--port", str(port),
                             "--aet", "DEMO", "--dest", "PORTAL=PACSPORTAL@127.0.0.1:11112"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = threading.Timer(15, proc.kill)
        banner.start()
        line = proc.stdout.readline()
        banner.cancel()
        assert f"127.0.0.1:{port} serving 36 instances" in line
        dcmtk("echoscu", "-aec", "DEMO", "127.0.0.1", port)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
