"""Only the images we asked for, in the right patient's folder, or a clear failure: attacks and a clumsy
network against the real receiver process (`manage.py receive` on the test database) and a real Orthanc.

Every test asserts 0 instances lost, 0 foreign filed, 0 duplicated, and no staging left behind."""
import secrets
import threading
import time
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelMove

from apps.jobs import runner
from apps.retrieval import intake, moves
from apps.retrieval.models import MoveKey, RetrievalJob
from apps.servers.models import DicomServer
from tests.fixtures_common import own_data_folders, unused_port
from tests.jobs.cluster import wait_for
from tests.pacs import slow_retrieve_answers
from tests.receiver_process import receiver_process

pytestmark = pytest.mark.django_db(transaction=True)
PORTAL_AE = "PORTALSAFE"


@pytest.fixture
def receiver(settings, tmp_path, orthanc):
    """The real receiver process for our AE title, with settings pointing the portal at it."""
    with receiver_process(settings, tmp_path, orthanc, PORTAL_AE) as port:
        yield port


@pytest.fixture
def orth(db, orthanc):
    peer = orthanc.peer()
    return DicomServer.objects.create(name="ORTH", ae_title=peer.ae_title, host=peer.host, port=peer.port, retries=0)


def job_for(study, server="ORTH") -> RetrievalJob:
    day = f"{study['StudyDate'][:4]}-{study['StudyDate'][4:6]}-{study['StudyDate'][6:]}"
    text = f"PatientID,StudyDate,Modality,Server\n{study['PatientID']},{day},{study['Modality']},{server}\n"
    (read,) = intake.read_case_lists([("cases.csv", text)], user=None)
    return RetrievalJob.from_case_list(read.case_list, source_name="cases.csv", start=False)


def run(job) -> RetrievalJob:
    for item in job.items.all():
        runner.run_item(item._meta.label, item.pk)
    job.refresh_from_db()
    return job


def filed(settings) -> set[str]:
    return {p.stem for p in Path(settings.DOWNLOADS_DIR).rglob("*.dcm")}


def staged_left(settings) -> list[Path]:
    """Every file left in staging but the receiver's own bookkeeping at its top (.receiver-<pid>.json, .cut-off/)."""
    root = Path(settings.STAGING_DIR)
    return [p for p in root.rglob("*") if p.is_file() and not p.relative_to(root).parts[0].startswith(".receiver-")
            and p.relative_to(root).parts[0] != ".cut-off"]


def store_as(calling_ae: str, port: int, datasets, *, originator=None) -> list[int]:
    """C-STOREs to our receiver calling as `calling_ae`; returns the statuses, or raises if rejected."""
    ae = AE(ae_title=calling_ae)
    for sop_class in {str(ds.SOPClassUID) for ds in datasets}:
        ae.add_requested_context(sop_class, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    assoc = ae.associate("127.0.0.1", port, ae_title=PORTAL_AE)
    if not assoc.is_established:
        raise ConnectionRefusedError(f"association of {calling_ae} not accepted")
    try:
        aet, msg = originator or (None, None)
        return [int(assoc.send_c_store(ds, originator_aet=aet, originator_id=msg).Status) for ds in datasets]
    finally:
        assoc.release()


def other_patients_instances(orthanc, orthanc_dataset, study, count=7):
    others = [s for s in orthanc_dataset["studies"] if s["PatientID"] != study["PatientID"]]
    paths = [p for p in orthanc.dataset_dir.rglob("*.dcm")
             if pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID == others[0]["StudyInstanceUID"]]
    return [pydicom.dcmread(p) for p in paths][:count]


def extra_instances_of(study, orthanc, orthanc_dataset, count=7):
    """Instances claiming to belong to the requested study that the PACS never had (new SOP UIDs)."""
    forged = other_patients_instances(orthanc, orthanc_dataset, study, count)
    for ds in forged:
        ds.StudyInstanceUID, ds.PatientID = study["StudyInstanceUID"], study["PatientID"]
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    return forged


@pytest.mark.parametrize("forge, words", [
    (lambda study, orthanc, data: other_patients_instances(orthanc, data, study), "of another study"),
    (extra_instances_of, "not among the instances the PACS listed for the study"),
])
def test_forged_stores_during_a_real_retrieval_are_refused_or_quarantined_never_filed(
        receiver, orth, orthanc, orthanc_dataset, settings, monkeypatch, forge, words):
    study = orthanc_dataset["studies"][0]
    forged = forge(study, orthanc, orthanc_dataset)
    real_move, outcomes = moves.c_move, {}

    def move_with_forgers(peer, local, query, destination_ae, *, message_id, **kw):
        # While our C-MOVE is in flight: a stranger's association is refused outright; a peer spoofing the
        # PACS's AE title that knows the live key gets its instances staged, then they must never be filed.
        assert MoveKey.objects.filter(message_id=message_id).exists()
        with pytest.raises(ConnectionRefusedError):
            store_as("EVIL", receiver, forged[:1], originator=(PORTAL_AE, message_id))
        outcomes["spoofed"] = store_as(orth.ae_title, receiver, forged, originator=(PORTAL_AE, message_id))
        return real_move(peer, local, query, destination_ae, message_id=message_id, **kw)

    monkeypatch.setattr(moves, "c_move", move_with_forgers)
    job = run(job_for(study))
    item = job.items.get()
    expected = orthanc.study_instances(study["StudyInstanceUID"])
    assert outcomes["spoofed"] == [0] * len(forged)
    assert item.status == "failed" and f"{len(forged)} instances that are not part of it arrived" in item.error
    assert words in item.error and "quarantined" in item.error
    assert f"with the {len(expected)} of it that arrived alongside: nothing of it was filed" in item.error
    assert filed(settings) == set(), "all or nothing: a study that came with forgeries is not trusted, not filed"
    assert item.instances == 0 and item.expected == len(expected)
    quarantine = Path(settings.QUARANTINE_DIR)
    assert {p.stem for p in quarantine.rglob("withheld/*.dcm")} == expected, "the study's own, kept for inspection"
    assert {p.stem for p in quarantine.rglob("*.dcm")} - expected == {str(ds.SOPInstanceUID) for ds in forged}
    assert staged_left(settings) == [] and not MoveKey.objects.exists()


def test_a_guessed_key_and_an_unsolicited_store_are_refused_and_nothing_is_kept(receiver, orth, orthanc,
                                                                             orthanc_dataset, settings):
    forged = other_patients_instances(orthanc, orthanc_dataset, orthanc_dataset["studies"][0], count=2)
    guessed = store_as(orth.ae_title, receiver, forged, originator=(PORTAL_AE, secrets.randbelow(65535) + 1))
    plain = store_as(orth.ae_title, receiver, forged)
    assert guessed == plain == [0x0124, 0x0124], "Refused: not authorized"
    with pytest.raises(ConnectionRefusedError):
        store_as("UNKNOWNAE", receiver, forged)
    assert staged_left(settings) == []


def test_move_keys_never_collide_even_when_the_draw_does(orth, monkeypatch):
    job = job_for({"PatientID": "P", "StudyDate": "20240101", "Modality": "CT"})
    item = job.items.get()
    draws = iter([41, 41, 41, 99])
    monkeypatch.setattr("apps.retrieval.models.secrets.randbelow", lambda n: next(draws))
    first = MoveKey.allocate(item, "ORTHANC", "1.2.3", seconds=60)
    second = MoveKey.allocate(item, "ORTHANC", "1.2.4", seconds=60)
    assert (first.message_id, second.message_id) == (42, 100)


def test_two_items_65535_apart_running_at_once_keep_their_patients_apart(receiver, orth, orthanc, orthanc_dataset,
                                                                       settings):
    a, b = orthanc_dataset["studies"][0], orthanc_dataset["studies"][2]
    assert a["PatientID"] != b["PatientID"]
    job_a, job_b = job_for(a), job_for(b)
    item_b = job_b.items.get()
    item_a = job_a.items.get()
    type(item_b).objects.filter(pk=item_b.pk).update(id=item_a.pk + 65535)  # the old key was pk % 65535 + 1
    threads = [threading.Thread(target=run, args=(job,)) for job in (job_a, job_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for job, study in ((job_a, a), (job_b, b)):
        item = job.items.get()
        assert item.status == "succeeded", item.error
        folder = Path(settings.DOWNLOADS_DIR) / item.path
        assert {p.stem for p in folder.glob("*.dcm")} == orthanc.study_instances(study["StudyInstanceUID"])
    assert staged_left(settings) == []


def test_a_stale_run_files_nothing_once_another_worker_took_the_item_over(receiver, orth, orthanc, orthanc_dataset,
                                                                        settings, monkeypatch):
    study = orthanc_dataset["studies"][1]
    job = job_for(study)
    item = job.items.get()
    real_move, took_over = moves.c_move, threading.Event()

    def move_then_lose_the_lease(*args, **kw):
        result = real_move(*args, **kw)
        if not took_over.is_set():  # the first run: another worker reclaims the row and finishes it
            took_over.set()
            type(item).objects.filter(pk=item.pk).update(status="pending")
            runner.run_item(item._meta.label, item.pk)
        return result

    monkeypatch.setattr(moves, "c_move", move_then_lose_the_lease)
    run(job)
    item.refresh_from_db()
    assert item.status == "succeeded" and item.attempts == 2
    folder = Path(settings.DOWNLOADS_DIR) / item.path
    assert {p.stem for p in folder.glob("*.dcm")} == orthanc.study_instances(study["StudyInstanceUID"])
    assert staged_left(settings) == [] and not MoveKey.objects.exists()


@pytest.fixture
def slow_move_pacs(receiver):
    """A PACS whose C-MOVE sends one small instance every 0.5 s (100 announced) and notes a C-CANCEL."""
    seen = {}

    def on_move(event):
        yield "127.0.0.1", receiver
        yield from slow_retrieve_answers(event, seen)

    def on_find(event):
        ds = pydicom.Dataset()
        ds.QueryRetrieveLevel, ds.PatientID, ds.StudyDate = "STUDY", "SLOW", "20240105"
        ds.StudyInstanceUID, ds.ModalitiesInStudy, ds.NumberOfStudyRelatedInstances = "1.2.3.4", "CT", 100
        yield 0xFF00, ds

    ae = AE(ae_title="SLOWPACS")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelMove)
    for cx in StoragePresentationContexts:
        ae.add_requested_context(cx.abstract_syntax)
    server = ae.start_server(("127.0.0.1", 0), block=False,
                             evt_handlers=[(evt.EVT_C_MOVE, on_move), (evt.EVT_C_FIND, on_find)])
    record = DicomServer.objects.create(name="SLOW", ae_title="SLOWPACS", host="127.0.0.1",
                                        port=server.server_address[1], retries=0)
    yield record, seen
    server.shutdown()


def test_cancel_stops_a_running_c_move_within_3_s_and_files_nothing(slow_move_pacs, settings):
    _, seen = slow_move_pacs
    job = job_for({"PatientID": "SLOW", "StudyDate": "20240105", "Modality": "CT"}, server="SLOW")
    worker = threading.Thread(target=run, args=(job,))
    worker.start()
    wait_for(lambda: MoveKey.objects.exists(), 20, "the C-MOVE to start")
    time.sleep(1.0)
    asked = time.monotonic()
    job.cancel()
    worker.join(10)
    took = time.monotonic() - asked
    item = job.items.get()
    assert item.status == "canceled" and took < 3, (item.status, took)
    assert seen.get("cancelled"), "the PACS got a C-CANCEL"
    assert filed(settings) == set() and staged_left(settings) == [] and not MoveKey.objects.exists()


def test_an_unwritable_downloads_folder_is_named_nothing_is_half_filed_and_a_retry_after_the_fix_succeeds(
        receiver, orth, orthanc, orthanc_dataset, settings, tmp_path):
    study = orthanc_dataset["studies"][3]
    blocker = tmp_path / "downloads"
    blocker.write_text("a file where the downloads folder should be")  # root ignores permissions; this it cannot
    job = run(job_for(study))
    item = job.items.get()
    assert item.status == "failed"
    assert f"The downloads folder {blocker} is not writable (" in item.error and "nothing was retrieved" in item.error
    assert staged_left(settings) == []
    blocker.unlink()
    job.retry_failed()
    run(job)
    item.refresh_from_db()
    assert item.status == "succeeded", item.error
    assert filed(settings) == orthanc.study_instances(study["StudyInstanceUID"])


def test_a_dead_receiver_is_blamed_not_the_pacs(orth, orthanc, orthanc_dataset, settings, tmp_path):
    port = unused_port()  # nobody listens: the receiver is down
    settings.DICOM_AE_TITLE, settings.DICOM_PORT = "PORTALDOWN", port
    own_data_folders(settings, tmp_path)
    orthanc.add_modality("PORTALDOWN", "PORTALDOWN", port)
    item = run(job_for(orthanc_dataset["studies"][0])).items.get()
    assert item.status == "failed"
    assert "the portal's receiver PORTALDOWN at 127.0.0.1:" in item.error and "manage.py receive" in item.error
    assert "declared on the PACS" not in item.error, "the PACS configuration is not blamed"
    assert filed(settings) == set() and staged_left(settings) == []
