"""Attacks on a retrieval from outside, against the real receiver process and a real PACS: a raw DICOM peer
sweeping move keys while a move is live, forged instances under the live key from another address, naming
another patient, or re-sending a SOP Instance UID with other content, and a PACS whose C-GET brings what was
not asked for. Each asserts nothing foreign filed, nothing of a doubtful study filed, and the row's error
names the cause."""
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE

from apps.audit.models import AuditEvent
from apps.dicom.demo.qrscp import DemoPACS
from apps.dicom.demo.synthetic import write_dataset
from apps.retrieval import moves
from apps.retrieval.models import MoveKey, RetrievalItem, RetrievalJob
from apps.servers.models import DicomServer
from tests.fixtures_common import own_data_folders
from tests.receiver_process import receiver_process
from tests.retrieval.test_integrity import PORTAL_AE, filed, job_for, other_patients_instances, run, staged_left
from tests.retrieval.test_series_moves import MoveSpy, job_of, server_for, study_of

pytestmark = pytest.mark.django_db(transaction=True)
SWEEPER, STRANGER = "127.0.0.7", "127.0.0.9"  # loopback addresses that are not the PACS's (127.0.0.1)
REFUSALS_ALLOWED = 5  # the RECEIVER_REFUSALS_ALLOWED default the receiver process runs with


@pytest.fixture
def receiver(settings, tmp_path, orthanc):
    with receiver_process(settings, tmp_path, orthanc, PORTAL_AE) as port:
        yield port


@pytest.fixture
def orth(db, orthanc):
    peer = orthanc.peer()
    assert peer.host == "127.0.0.1"
    return DicomServer.objects.create(name="ORTH", ae_title=peer.ae_title, host=peer.host, port=peer.port, retries=0)


def associate_from(address: str, calling_ae: str, port: int, datasets=()):
    ae = AE(ae_title=calling_ae)
    for sop_class in {str(ds.SOPClassUID) for ds in datasets} or {"1.2.840.10008.5.1.4.1.1.2"}:
        ae.add_requested_context(sop_class, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    return ae.associate("127.0.0.1", port, ae_title=PORTAL_AE, bind_address=(address, 0))


def sweep(address: str, calling_ae: str, port: int, ds, guesses) -> tuple[list[int], bool]:
    """One association from `address` trying each guessed move key in turn: the statuses answered, and
    whether the receiver aborted the association."""
    assoc = associate_from(address, calling_ae, port, [ds])
    assert assoc.is_established
    answers = []
    try:
        for n, guess in enumerate(guesses, 1):
            try:
                rsp = assoc.send_c_store(ds, msg_id=n, originator_aet=PORTAL_AE, originator_id=guess)
            except RuntimeError:  # the association is gone
                break
            if "Status" not in rsp:
                break
            answers.append(int(rsp.Status))
        # pynetdicom's own thread marks the association aborted once it has read the A-ABORT; the answer
        # that never came may return first. That thread ends with the association, so wait for it.
        assoc.join(timeout=10)
        return answers, assoc.is_aborted
    finally:
        if assoc.is_established:
            assoc.release()


def store_with_key(address: str, calling_ae: str, port: int, datasets, message_id: int) -> list[int]:
    assoc = associate_from(address, calling_ae, port, datasets)
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(ds, originator_aet=PORTAL_AE, originator_id=message_id).Status)
                for ds in datasets]
    finally:
        assoc.release()


def study_datasets(orthanc, study) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(orthanc.dataset_dir.rglob("*.dcm"))
            if pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID == study["StudyInstanceUID"]]


def during_the_move(monkeypatch, settings, attack):
    """Run `attack(message_id)` while the row's C-MOVE key is live, right before the PACS sends."""
    real_move = moves.c_move

    def move(peer, local, query, destination_ae, *, message_id, **kw):
        assert MoveKey.objects.filter(message_id=message_id).exists()
        attack(message_id)
        return real_move(peer, local, query, destination_ae, message_id=message_id, **kw)

    monkeypatch.setattr(moves, "c_move", move)


def test_a_peer_sweeping_move_keys_during_a_move_is_cut_off_after_a_few_guesses(
        receiver, orth, orthanc, orthanc_dataset, settings, monkeypatch):
    study = orthanc_dataset["studies"][0]
    forged = other_patients_instances(orthanc, orthanc_dataset, study, count=1)[0]
    seen = {}

    def attack(live_key):
        guesses = [k for k in range(1, 41) if k != live_key] + [live_key]  # the live key comes last
        seen["answers"], seen["aborted"] = sweep(SWEEPER, orth.ae_title, receiver, forged, guesses)
        seen["again"] = associate_from(SWEEPER, orth.ae_title, receiver, [forged])
        if seen["again"].is_established:
            seen["again"].release()
        # the live key itself, from an address that is not the PACS's: refused too
        seen["stranger"] = store_with_key(STRANGER, orth.ae_title, receiver, [forged], live_key)

    during_the_move(monkeypatch, settings, attack)
    item = run(job_for(study)).items.get()

    assert seen["answers"] == [0x0124] * (REFUSALS_ALLOWED + 1), "a few 'not authorized', then cut off"
    assert seen["aborted"], "the sweeping association is aborted"
    assert seen["again"].is_rejected, "the address is refused for a while"
    assert seen["stranger"] == [0x0124], "the live key from another address is not enough"
    assert item.status == "succeeded", item.error
    assert filed(settings) == orthanc.study_instances(study["StudyInstanceUID"]), "the PACS's own, nothing else"
    assert not Path(settings.QUARANTINE_DIR).exists() or not list(Path(settings.QUARANTINE_DIR).rglob("*.dcm"))
    cut = AuditEvent.objects.filter(action="receiver.peer_cut_off")
    assert [(e.target, e.details["calling_ae"]) for e in cut] == [(f"address:{SWEEPER}", orth.ae_title)]
    assert staged_left(settings) == [] and not MoveKey.objects.exists()


def forged_of_the_study(orthanc, study, **changes) -> pydicom.Dataset:
    ds = study_datasets(orthanc, study)[0]
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    if "SOPInstanceUID" in changes:
        ds.file_meta.MediaStorageSOPInstanceUID = changes["SOPInstanceUID"]
    return ds


@pytest.mark.parametrize("forge, words", [
    # the study's UIDs and a new SOP, but another patient's identity, from the PACS's own address
    (lambda orthanc, study: forged_of_the_study(orthanc, study, SOPInstanceUID=pydicom.uid.generate_uid(),
                                                PatientID="SOMEONE-ELSE"),
     "naming another PatientID than the PACS's C-FIND answered"),
    # a real SOP of the study, other content (another patient's name), sent before the PACS's own copy
    (lambda orthanc, study: forged_of_the_study(orthanc, study, PatientName="Other^Patient"),
     "sent again under a SOP Instance UID already received, with other content"),
])
def test_forged_instances_with_the_live_key_from_the_pacs_address_fail_the_row_and_file_nothing(
        receiver, orth, orthanc, orthanc_dataset, settings, monkeypatch, forge, words):
    study = orthanc_dataset["studies"][0]
    forged = forge(orthanc, study)
    statuses = {}
    during_the_move(monkeypatch, settings, lambda key: statuses.setdefault(
        "forged", store_with_key("127.0.0.1", orth.ae_title, receiver, [forged], key)))
    item = run(job_for(study)).items.get()

    expected = orthanc.study_instances(study["StudyInstanceUID"])
    assert statuses["forged"] == [0]
    assert item.status == "failed" and words in item.error and "nothing of it was filed" in item.error, item.error
    assert filed(settings) == set() and item.instances == 0, "a study that came with a forgery is not filed"
    quarantined = [p for p in Path(settings.QUARANTINE_DIR).rglob("*.dcm")]
    assert {p.stem.split("~")[0] for p in quarantined} == expected | {str(forged.SOPInstanceUID)}
    assert len(quarantined) == len(expected) + 1, "the forgery and every instance of the study, kept apart"
    assert staged_left(settings) == [] and not MoveKey.objects.exists()


class GenerousPACS(DemoPACS):
    """Sends what a C-GET asks for, and `extra` files besides (that it does not list in a C-FIND)."""

    extra: list[Path] = []

    def _instances(self, identifier, sop_class):
        found = super()._instances(identifier, sop_class)
        return found + [{**found[0], "path": path} for path in self.extra]


@pytest.mark.parametrize("kind, words", [
    ("foreign", "of another study"),
    ("surplus", "not among the instances the PACS listed for the study"),
])
def test_a_foreign_or_surplus_instance_over_c_get_is_quarantined_with_the_study(tmp_path, settings, db, kind, words):
    own_data_folders(settings, tmp_path)
    manifest = write_dataset(tmp_path / "pacs", patients=2, studies=1, instances=3, modalities=("CT",),
                             id_prefix="GET")
    wanted, other = manifest["studies"]
    other_paths = [p for p in (tmp_path / "pacs").rglob("*.dcm")
                   if pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID == other["StudyInstanceUID"]]
    if kind == "foreign":
        extra = other_paths[0]
    else:  # claims the wanted study and patient, under a SOP the PACS never had
        ds = pydicom.dcmread(other_paths[0])
        ds.StudyInstanceUID, ds.PatientID = wanted["StudyInstanceUID"], wanted["PatientID"]
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        extra = tmp_path / "surplus.dcm"
        ds.save_as(extra, enforce_file_format=True)
    GenerousPACS.extra = [extra]
    with GenerousPACS(tmp_path / "pacs", ae_title="GENEROUS") as pacs:
        server = DicomServer.objects.create(name="GEN", ae_title="GENEROUS", host="127.0.0.1", port=pacs.port,
                                            retries=0, retrieve_method="c-get")
        job = RetrievalJob.objects.create(source_name="c-get")
        RetrievalItem.objects.create(job=job, line=1, dicom_server=server, server_name=server.name,
                                     study_instance_uid=wanted["StudyInstanceUID"])
        item = run(job).items.get()
    assert item.status == "failed" and words in item.error and "nothing of it was filed" in item.error, item.error
    assert list(Path(settings.DOWNLOADS_DIR).rglob("*.dcm")) == []
    quarantined = list(Path(settings.QUARANTINE_DIR).rglob("*.dcm"))
    assert len(quarantined) == 4 and len([p for p in quarantined if p.parent.name == "withheld"]) == 3
    assert [p for p in Path(settings.STAGING_DIR).rglob("*.dcm")] == []


@pytest.fixture
def three_series(empty_orthanc, tmp_path):
    return study_of(empty_orthanc, tmp_path, series=3, instances=4)


@pytest.mark.parametrize("forged_move", [1, 3])  # the first series moved, or the last: its siblings filed before
def test_a_forgery_in_one_series_of_a_study_moved_in_parallel_quarantines_the_whole_study(
        three_series, settings, tmp_path, monkeypatch, forged_move):
    pacs, datasets = three_series.pacs, [pydicom.dcmread(p) for p in three_series.paths]
    forged = {}

    def forge(query, message_id):
        # the forged_move-th series move: a peer at the PACS's address with its AE title and this series'
        # live key sends an instance of this series naming another patient
        forged["moves"] = forged.get("moves", 0) + 1
        if forged["moves"] == forged_move:
            ds = next(ds for ds in datasets if str(ds.SeriesInstanceUID) == query["SeriesInstanceUID"])
            ds.PatientID, ds.SOPInstanceUID = "SOMEONE-ELSE", pydicom.uid.generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            forged["sop"], forged["series"] = str(ds.SOPInstanceUID), query["SeriesInstanceUID"]
            forged["status"] = store_with_key("127.0.0.1", pacs.aet, receiver_port["port"], [ds], message_id)

    receiver_port = {}
    spy = MoveSpy(monkeypatch, settings, before=forge)
    with receiver_process(settings, tmp_path, pacs, PORTAL_AE) as port:
        receiver_port["port"] = port
        # two associations for three series: the third moves once a sibling has been checked and filed
        item = run(job_of(three_series.uid, server_for(pacs, 2))).items.get()

    assert forged["status"] == [0] and len({key for _, _, key in spy.moves}) == 3, spy.moves
    assert filed(settings) == set() and item.instances == 0, "nothing of a study that came with a forgery is filed"
    quarantined = list(Path(settings.QUARANTINE_DIR).rglob("*.dcm"))
    assert {p.stem for p in quarantined} == three_series.instances | {forged["sop"]}
    assert len(quarantined) == 13 and len({p.parent.parent for p in quarantined}) == 1, "one quarantine per study"
    assert sorted(p.parent.name for p in quarantined) == ["other-patient"] + ["withheld"] * 12
    where = str(quarantined[0].parent.parent)
    assert item.status == "failed", item.error
    assert f"series {forged['series']} of study {three_series.uid}" in item.error
    assert "naming another PatientID than the PACS's C-FIND answered" in item.error and where in item.error
    assert "with the 4 of it that arrived alongside: nothing of it was filed" in item.error, item.error
    clean = sorted({str(ds.SeriesInstanceUID) for ds in datasets} - {forged["series"]})
    for series in clean:
        assert (f"series {series} of study {three_series.uid}: its 4 instances were quarantined in {where} "
                "with the study's foreign arrivals, not filed") in item.error, item.error
    assert "were kept" not in item.error
    assert sorted((s["received"], s["withheld"]) for s in item.result["studies"]) == [(0, 4)] * 3
    assert staged_left(settings) == [] and not MoveKey.objects.exists()
