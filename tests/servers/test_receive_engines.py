"""`manage.py receive --engine lean|pynetdicom`: both Storage SCPs, as the real command, stage a C-MOVE
from a real Orthanc (a configured server, under a live move key) with the datasets exactly as Orthanc holds them."""
import signal

import pytest

from apps.dicom import files
from apps.dicom.peers import LocalAE
from apps.dicom.scu import c_move
from apps.dicom.staging import MoveStaging
from tests.fixtures_common import unused_port
from tests.pacs import dataset_part
from tests.receiver_process import start_receive
from tests.retrieval.keys import live_move_key

pytestmark = pytest.mark.django_db(transaction=True)


def start_receiver(tmp_path, ae_title, port, engine="lean"):
    return start_receive(ae_title, "--engine", engine, DATA_DIR=tmp_path / "data", STAGING_DIR=tmp_path / "staging",
                         DICOM_PORT=port)


@pytest.mark.parametrize("engine", ["lean", "pynetdicom"])
def test_each_engine_stages_a_move_byte_for_byte_and_stops_on_sigterm(tmp_path, orthanc, orthanc_dataset, engine):
    ae_title, port = f"RCV{engine[:4].upper()}", unused_port()
    orthanc.add_modality(ae_title, ae_title, port)
    study = orthanc_dataset["studies"][2]
    live_move_key(orthanc, study["StudyInstanceUID"], 777)
    proc = start_receiver(tmp_path, ae_title, port, engine)
    try:
        result = c_move(orthanc.peer(), LocalAE(ae_title=ae_title), {"StudyInstanceUID": study["StudyInstanceUID"]},
                            ae_title, message_id=777)
        staging = MoveStaging(tmp_path / "staging")
        staged = staging.instances(staging.folder(ae_title, 777))
        assert result.completed == len(staged) == len(orthanc.study_instances(study["StudyInstanceUID"])) > 0
        originals = {files.read_meta(p).sop_instance_uid: p for p in orthanc.dataset_dir.rglob("*.dcm")}
        for path in staged:
            info = files.inspect(path)  # a complete Part-10 file
            assert dataset_part(path.read_bytes()) == dataset_part(originals[info.sop_instance_uid].read_bytes())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
