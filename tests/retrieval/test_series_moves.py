"""Series-level C-MOVEs in parallel, against a real Orthanc holding a study of three series and the real
receiver process: each series moved under its own move key and reconciled on its own, never more
associations than the server allows, an instance of another series staged under a series' key
quarantined, and a study moved whole when the server allows one association."""
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pydicom
import pytest

from apps.dicom.errors import DimseFailure
from apps.jobs import slots
from apps.jobs.models import AssociationSlot
from apps.retrieval import moves
from apps.retrieval.models import MoveKey, RetrievalItem, RetrievalJob
from apps.retrieval.moves import series_parts
from apps.retrieval.outcomes import RowOutcome, StudyOutcome, problems_message
from apps.retrieval.plans import StudyPlan
from apps.servers.models import DicomServer
from tests.fixtures_common import own_data_folders
from tests.receiver_process import receiver_process
from tests.retrieval.test_filing_whole import RenameSpy
from tests.retrieval.test_integrity import PORTAL_AE, filed, run, staged_left, store_as

pytestmark = pytest.mark.django_db(transaction=True)


def study_of(empty_orthanc, tmp_path, series: int, instances: int):
    from apps.dicom.demo.synthetic import write_dataset

    manifest = write_dataset(tmp_path / "dataset", patients=1, studies=1, series=series, instances=instances,
                             seed=11, id_prefix="SER")
    empty_orthanc.load(tmp_path / "dataset")
    study = manifest["studies"][0]
    paths = list((tmp_path / "dataset").rglob("*.dcm"))
    return SimpleNamespace(pacs=empty_orthanc, uid=study["StudyInstanceUID"], paths=paths,
                           instances=empty_orthanc.study_instances(study["StudyInstanceUID"]))


@pytest.fixture
def three_series(empty_orthanc, tmp_path):
    return study_of(empty_orthanc, tmp_path, series=3, instances=4)


@pytest.fixture
def six_series(empty_orthanc, tmp_path):
    return study_of(empty_orthanc, tmp_path, series=6, instances=2)


@pytest.fixture
def receiver(settings, tmp_path, three_series):
    with receiver_process(settings, tmp_path, three_series.pacs, PORTAL_AE) as port:
        yield port


def server_for(pacs, max_associations: int) -> DicomServer:
    peer = pacs.peer()
    return DicomServer.objects.create(name="SPARE", ae_title=peer.ae_title, host=peer.host, port=peer.port,
                                      retries=0, max_associations=max_associations)


def job_of(study_uid: str, server: DicomServer) -> RetrievalJob:
    job = RetrievalJob.objects.create(source_name="series")
    RetrievalItem.objects.create(job=job, line=1, dicom_server=server, server_name=server.name,
                                 study_instance_uid=study_uid)
    return job


class MoveSpy:
    """Wraps the configured C-MOVE: records each move's level, series and key, and the peak number of
    moves in flight at once (each lingers 0.3 s first, so moves that run in parallel overlap)."""

    def __init__(self, monkeypatch, settings, before=None):
        self.real = moves.c_move
        self.moves, self.running, self.peak, self.lock = [], 0, 0, threading.Lock()
        self.before = before
        monkeypatch.setattr(moves, "c_move", self)

    def __call__(self, peer, local, query, destination_ae, *, level, message_id, **kw):
        with self.lock:
            self.moves.append((level, query.get("SeriesInstanceUID"), message_id))
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            time.sleep(0.3)
            if self.before:
                self.before(query, message_id)
            return self.real(peer, local, query, destination_ae, level=level, message_id=message_id, **kw)
        finally:
            with self.lock:
                self.running -= 1


def test_series_move_in_parallel_each_under_its_own_key_and_count(receiver, three_series, settings, monkeypatch):
    server = server_for(three_series.pacs, 3)
    spy = MoveSpy(monkeypatch, settings)
    job = run(job_of(three_series.uid, server))
    item = job.items.get()
    assert item.status == "succeeded", item.error
    assert filed(settings) == three_series.instances and item.instances == item.expected == 12
    assert spy.peak == 3 and {level for level, _, _ in spy.moves} == {"SERIES"}
    assert len({key for _, _, key in spy.moves}) == 3, "every series under a move key of its own"
    series = item.result["studies"]
    assert sorted(s["SeriesInstanceUID"] for s in series) == sorted(s for _, s, _ in spy.moves)
    assert [(s["expected"], s["received"]) for s in series] == [(4, 4)] * 3
    assert staged_left(settings) == [] and not MoveKey.objects.exists()
    assert not AssociationSlot.objects.exclude(holder="").exists(), "every slot given back"


def test_a_retry_after_a_run_that_died_with_parts_on_hold_files_the_whole_study(receiver, three_series, settings,
                                                                                monkeypatch):
    job = job_of(three_series.uid, server_for(three_series.pacs, 3))
    item = job.items.get()
    # a run that died (a killed worker) after one series was checked: its part waits in a hold of its own
    dead_hold = Path(settings.STAGING_DIR) / ".hold" / f"{item.pk}-deadrun" / "0123456789ab"
    dead_hold.mkdir(parents=True)
    (dead_hold / "1.2.3.dcm").write_bytes(b"not filed by a later run")
    MoveSpy(monkeypatch, settings)
    item = run(job).items.get()
    assert item.status == "succeeded", item.error
    assert filed(settings) == three_series.instances and item.instances == 12
    assert staged_left(settings) == [], "the dead run's hold and this run's are gone"


def test_the_server_limit_holds_when_other_workers_hold_its_slots(receiver, three_series, settings, monkeypatch):
    server = server_for(three_series.pacs, 3)
    other = slots.acquire(server, "another-worker", timeout=1)
    spy = MoveSpy(monkeypatch, settings)
    job = run(job_of(three_series.uid, server))
    assert job.items.get().status == "succeeded"
    assert spy.peak == 2, "one slot was taken elsewhere: two moves at once, not three"
    assert len(spy.moves) == 3 and filed(settings) == three_series.instances
    assert list(AssociationSlot.objects.exclude(holder="").values_list("holder", flat=True)) == [other]


def test_one_association_moves_the_study_whole(receiver, three_series, settings, monkeypatch):
    spy = MoveSpy(monkeypatch, settings)
    job = run(job_of(three_series.uid, server_for(three_series.pacs, 1)))
    item = job.items.get()
    assert item.status == "succeeded" and filed(settings) == three_series.instances
    assert [(level, series) for level, series, _ in spy.moves] == [("STUDY", None)]
    assert "SeriesInstanceUID" not in item.result["studies"][0]


def test_an_instance_of_another_series_under_a_series_key_is_quarantined(receiver, three_series, settings,
                                                                           monkeypatch):
    datasets = [pydicom.dcmread(p) for p in three_series.paths]
    forged = {}

    def forge(query, message_id):
        # a peer with the PACS's AE title and this series' live key sends an instance of another series
        if not forged:
            stranger = next(ds for ds in datasets if str(ds.SeriesInstanceUID) != query["SeriesInstanceUID"])
            forged["sop"], forged["series"] = str(stranger.SOPInstanceUID), query["SeriesInstanceUID"]
            forged["status"] = store_as(three_series.pacs.aet, receiver, [stranger], originator=(PORTAL_AE, message_id))

    MoveSpy(monkeypatch, settings, before=forge)
    job = run(job_of(three_series.uid, server_for(three_series.pacs, 3)))
    item = job.items.get()
    assert forged["status"] == [0]
    assert item.status == "failed" and "1 instances that are not part of it arrived" in item.error
    assert "of another series than the one moved" in item.error and "series " in item.error
    withheld = {str(ds.SOPInstanceUID) for ds in datasets if str(ds.SeriesInstanceUID) == forged["series"]}
    assert len(withheld) == 4 and "with the 4 of it that arrived alongside: nothing of it was filed" in item.error
    assert filed(settings) == set(), "nothing of a study one series of which came with a forgery is filed"
    quarantined = sorted(p.stem for p in (settings.QUARANTINE_DIR).rglob("*.dcm"))
    assert quarantined == sorted([forged["sop"], *three_series.instances]), "the forgery and the whole study"
    assert staged_left(settings) == [] and not MoveKey.objects.exists()


def test_a_series_move_the_pacs_refuses_fails_the_row_with_its_reason_and_the_others_are_filed(
        six_series, settings, tmp_path, monkeypatch):
    refused = []

    def refuse_the_first(query, message_id):
        if not refused:
            refused.append(query["SeriesInstanceUID"])
            raise DimseFailure("SPARE answered the C-MOVE with failure status 0xA801 (test)", status=0xA801)

    spy = MoveSpy(monkeypatch, settings, before=refuse_the_first)
    with receiver_process(settings, tmp_path, six_series.pacs, PORTAL_AE):
        job = run(job_of(six_series.uid, server_for(six_series.pacs, 2)))
    item = job.items.get()
    assert item.status == "failed" and "0xA801 (test)" in item.error
    assert len(spy.moves) == 6, f"the PACS refusing one series does not stop the others: {spy.moves}"
    # the series that came are filed (a retry moves only the refused one), nothing of the refused one
    series_of = {str(ds.SOPInstanceUID): str(ds.SeriesInstanceUID) for ds in map(pydicom.dcmread, six_series.paths)}
    assert filed(settings) == {sop for sop in six_series.instances if series_of[sop] not in refused}
    assert item.instances == 10 and item.expected == 12
    assert staged_left(settings) == [] and not MoveKey.objects.exists()
    assert not AssociationSlot.objects.exclude(holder="").exists()


class Answers:
    """A query association answering SERIES-level C-FINDs with fixed matches."""

    def __init__(self, *series):
        self.series = [pydicom.Dataset() for _ in series]
        for ds, (uid, count) in zip(self.series, series):
            ds.SeriesInstanceUID, ds.NumberOfSeriesRelatedInstances = uid, count

    def find(self, level, query):
        assert level == "SERIES"
        return self.series


def study_plan(expected):
    study = pydicom.Dataset()
    study.StudyInstanceUID = "1.2.3"
    return StudyPlan(study, expected)


@pytest.mark.parametrize("answers, split", [
    (Answers(("1.1", "4"), ("1.2", "6")), True),
    (Answers(("1.1", "4"), ("1.2", "5")), False),  # counts add up to 9, the study has 10: move it whole
    (Answers(("1.1", "4"), ("1.2", "")), False),  # a series without its count
    (Answers(("1.1", "10")), False),  # one series: nothing to split
    (Answers(("1.1", "5"), ("1.1", "5")), False),  # a series listed twice would stand in for another
])
def test_a_study_is_split_into_series_only_when_their_counts_add_up_to_its_own(answers, split):
    parts = series_parts(answers, study_plan(10))
    if split:
        assert [(p.series_uid, p.expected, p.move_query()[0]) for p in parts] == [("1.2", 6, "SERIES"),
                                                                                  ("1.1", 4, "SERIES")]
    else:
        assert [(p.series_uid, p.expected, p.move_query()[0]) for p in parts] == [(None, 10, "STUDY")]


def test_the_largest_series_are_moved_first_so_the_associations_end_together():
    """Three series of 100, 100 and 300 on two associations: in the PACS's order one association would
    start the 300 after its 100 (400 instances long, the other idle for 300 of them); largest first, the
    300 runs beside the two 100s. Equal counts keep the PACS's order."""
    answers = Answers(("1.1", "100"), ("1.2", "100"), ("1.3", "300"), ("1.4", "2"))
    parts = series_parts(answers, study_plan(502))
    assert [(p.series_uid, p.expected) for p in parts] == [("1.3", 300), ("1.1", 100), ("1.2", 100), ("1.4", 2)]


def test_a_series_shortfall_names_the_series():
    outcome = RowOutcome([StudyOutcome("1.2.3", None, 4, 4, 0, series_instance_uid="1.2.3.1"),
                          StudyOutcome("1.2.3", None, 6, 5, 0, series_instance_uid="1.2.3.2")])
    assert problems_message("SPARE", 3, outcome) == (
        "Line 3, SPARE: series 1.2.3.2 of study 1.2.3: received 5 of 6 instances. "
        "Files of the requested studies that arrived were kept.")


@pytest.mark.parametrize("tainted", [0, 3, 7])
def test_parts_settled_on_several_threads_at_once_file_nothing_of_a_tainted_study(tmp_path, tainted):
    from apps.retrieval.arrivals import Arrivals
    from apps.retrieval.holding import StudyHolds

    holds = StudyHolds(tmp_path / "hold", lambda: tmp_path / "quarantine")
    plans = [SimpleNamespace(uid="1.2.3", expected=3) for _ in range(8)]
    holds.expect(plans)
    staged = tmp_path / "staged"
    staged.mkdir()
    arrivals = []
    for n in range(8):
        paths = [staged / f"1.2.3.{n}.{i}.dcm" for i in range(3)]
        for path in paths:
            path.write_bytes(b"x" * 10)
        foreign = [(staged / f"9.9.{n}.dcm", "other-patient")] if n == tainted else []
        for path, _ in foreign:
            path.write_bytes(b"forged")
        arrivals.append(Arrivals(matching=paths, foreign=foreign))
    target, start, outcomes = tmp_path / "case", threading.Barrier(8), []

    def settle(n):
        start.wait()
        outcomes.append(holds.settle(plans[n], arrivals[n], target))

    threads = [threading.Thread(target=settle, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    holds.remove()
    assert not target.exists() or list(target.iterdir()) == [], "nothing of the tainted study in the case folder"
    assert len(list((tmp_path / "quarantine" / "withheld").iterdir())) == 24
    assert sorted((o.received, o.withheld, o.foreign) for o in outcomes) == [(0, 3, 0)] * 7 + [(0, 3, 1)]
    assert not (tmp_path / "hold").exists()


def test_a_c_get_files_its_staging_folder_whole_against_orthanc(three_series, settings, monkeypatch, tmp_path):
    own_data_folders(settings, tmp_path)  # (no receiver)
    spy = RenameSpy(monkeypatch)
    peer = three_series.pacs.peer()
    server = DicomServer.objects.create(name="GET", ae_title=peer.ae_title, host=peer.host, port=peer.port,
                                        retries=0, retrieve_method="c-get")
    job = run(job_of(three_series.uid, server))
    item = job.items.get()
    assert item.status == "succeeded", item.error
    assert filed(settings) == three_series.instances and staged_left(settings) == []
    [(source, target, done)] = spy.calls
    assert done and source.parent == Path(settings.STAGING_DIR) / "c-get"
    assert sorted(p.name for p in target.iterdir()) == sorted(f"{uid}.dcm" for uid in three_series.instances), \
        "the C-GET's ledger is not filed with the study"


def test_series_moved_in_parallel_file_their_hold_whole(receiver, three_series, settings, monkeypatch):
    spy = RenameSpy(monkeypatch)
    item = run(job_of(three_series.uid, server_for(three_series.pacs, 3))).items.get()
    assert item.status == "succeeded", item.error
    assert filed(settings) == three_series.instances and staged_left(settings) == []
    [(source, target, done)] = spy.calls
    assert done and source.parent.parent == Path(settings.STAGING_DIR) / ".hold"
    assert len(list(target.iterdir())) == 12
