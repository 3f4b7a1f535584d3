"""`manage.py receive`: C-MOVE results from a real Orthanc are staged per move, complete, as received."""
import signal

import pydicom
import pytest

from apps.dicom import files
from apps.dicom.errors import InvalidDicomFile
from apps.dicom.peers import LocalAE
from apps.dicom.scu import c_move
from apps.dicom.staging import MoveStaging
from tests.fixtures_common import unused_port
from tests.pacs import dataset_part
from tests.receiver_process import start_receive
from tests.retrieval.keys import live_move_key

pytestmark = pytest.mark.django_db(transaction=True)


def start_receiver(tmp_path, ae_title, port):
    return start_receive(ae_title, DATA_DIR=tmp_path / "data", STAGING_DIR=tmp_path / "staging", DICOM_PORT=port)


@pytest.fixture
def receiver(tmp_path, orthanc):
    port = unused_port()
    ae_title = "RECEIVER1"
    orthanc.add_modality("RECEIVER1", ae_title, port)
    proc = start_receiver(tmp_path, ae_title, port)
    yield ae_title, MoveStaging(tmp_path / "staging")
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_a_move_from_orthanc_is_staged_complete_under_its_originator_and_message_id(receiver, orthanc,
                                                                                      orthanc_dataset):
    ae_title, staging = receiver
    study = orthanc_dataset["studies"][0]
    expected = orthanc.study_instances(study["StudyInstanceUID"])
    live_move_key(orthanc, study["StudyInstanceUID"], 4242)

    result = c_move(orthanc.peer(), LocalAE(ae_title=ae_title), {"StudyInstanceUID": study["StudyInstanceUID"]},
                        ae_title, message_id=4242)
    assert result.completed == len(expected) and result.failed == 0

    staged = staging.instances(staging.folder(ae_title, 4242))
    assert {p.stem for p in staged} == expected
    ds = pydicom.dcmread(staged[0])
    assert ds.StudyInstanceUID == study["StudyInstanceUID"]
    originals = {files.read_meta(p).sop_instance_uid: p for p in orthanc.dataset_dir.rglob("*.dcm")}
    for path in staged:  # complete Part-10 files, the datasets byte for byte as Orthanc holds them
        info = files.inspect(path)
        assert dataset_part(path.read_bytes()) == dataset_part(originals[info.sop_instance_uid].read_bytes())
    assert not list(staging.folder(ae_title, 4242).glob(".incoming-*")), "no half-written files left"


def test_two_moves_of_one_study_never_mix(receiver, orthanc, orthanc_dataset):
    ae_title, staging = receiver
    uid = orthanc_dataset["studies"][1]["StudyInstanceUID"]
    expected = orthanc.study_instances(uid)
    for message_id in (11, 12):
        live_move_key(orthanc, uid, message_id)
        c_move(orthanc.peer(), LocalAE(ae_title=ae_title), {"StudyInstanceUID": uid}, ae_title,
                   message_id=message_id)
    for message_id in (11, 12):
        assert {p.stem for p in staging.instances(staging.folder(ae_title, message_id))} == expected


def test_the_receiver_stops_cleanly_on_sigterm(tmp_path):
    proc = start_receiver(tmp_path, "STOPME", unused_port())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0


def test_staging_refuses_a_hostile_uid_and_writes_atomically(tmp_path):
    staging = MoveStaging(tmp_path)
    folder = staging.folder("PORTAL", 7)
    assert folder == tmp_path / "PORTAL" / "7"
    assert staging.folder("../../etc", 7) == tmp_path / "______etc" / "7"
    assert staging.folder(None, None, "SENDER") == tmp_path / "_unsolicited" / "SENDER"
    for hostile in ("../../evil", "1.2.3/../../x", "", "1.2." + "3" * 80):
        with pytest.raises(InvalidDicomFile):
            staging.write(folder, hostile, b"x")
    path = staging.write(folder, "1.2.3.4", b"DICM-bytes")
    assert path.read_bytes() == b"DICM-bytes" and staging.instances(folder) == [path]
    assert staging.write(folder, "1.2.3.4", b"DICM-bytes") == path  # the same bytes again: nothing changes
    apart = staging.write(folder, "1.2.3.4", b"other bytes")  # never replaces what is staged: kept apart
    assert staging.instances(folder) == [path] and path.read_bytes() == b"DICM-bytes"
    assert apart.parent == folder / "foreign" / "duplicate" and apart.read_bytes() == b"other bytes"
