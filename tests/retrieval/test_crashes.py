"""A clumsy world during a real C-MOVE (a private Orthanc with one 400-instance study, the real receiver
process, real worker clusters): a worker SIGKILLed mid-move, and the PACS killed mid-transfer. Each ends
with every instance filed exactly once, nothing foreign, and no staging or move key left behind."""
import contextlib
import subprocess
import threading
from pathlib import Path

import pytest

from apps.jobs import runner
from apps.retrieval.models import MoveKey, RetrievalItem, RetrievalJob
from apps.servers.models import DicomServer
from tests.fixtures_common import unused_port
from tests.jobs.cluster import QCluster, wait_for
from tests.pacs import Orthanc
from tests.receiver_process import start_receive, stop

pytestmark = pytest.mark.django_db(transaction=True)
PORTAL_AE = "PORTALCRASH"
INSTANCES = 400


@pytest.fixture(scope="module")
def big_study(tmp_path_factory):
    """A private Orthanc (tests kill it) holding one study large enough to be caught mid-move."""
    from apps.dicom.demo.synthetic import write_dataset

    root = tmp_path_factory.mktemp("crash-orthanc")
    manifest = write_dataset(root / "dataset", patients=1, studies=1, series=2, instances=INSTANCES // 2,
                             rows=96, cols=96, modalities=("CT",), seed=11, id_prefix="CRASH")
    pacs = Orthanc(root / "server", aet="CRASHPACS").start()
    pacs.load(root / "dataset")
    yield pacs, manifest["studies"][0]["StudyInstanceUID"]
    pacs.stop()


def start_receiver(env) -> subprocess.Popen:
    return start_receive(PORTAL_AE, **{k: v for k, v in env.items() if k != "DICOM_AE_TITLE"})


@pytest.fixture
def portal_env(settings, tmp_path, big_study):
    """The real receiver on the test database, the PACS declared as a server, and the settings and
    environment a worker cluster needs to use the same receiver and folders."""
    pacs, _ = big_study
    port = unused_port()
    folders = dict(STAGING_DIR=tmp_path / "staging", DOWNLOADS_DIR=tmp_path / "downloads",
                   QUARANTINE_DIR=tmp_path / "quarantine")
    for name, value in folders.items():
        setattr(settings, name, value)
    settings.DICOM_AE_TITLE, settings.DICOM_PORT = PORTAL_AE, port
    env = dict(DATA_DIR=tmp_path / "data", DICOM_AE_TITLE=PORTAL_AE, DICOM_PORT=port, **folders)
    pacs.add_modality(PORTAL_AE, PORTAL_AE, port)
    env["receiver"] = [start_receiver(env)]
    peer = pacs.peer()
    DicomServer.objects.create(name="CRASH", ae_title=peer.ae_title, host=peer.host, port=peer.port, retries=0)
    yield env
    for proc in env["receiver"]:
        stop(proc)


def one_row_job(study_uid) -> RetrievalJob:
    job = RetrievalJob.objects.create(source_name="crash")
    RetrievalItem.objects.create(job=job, line=1, study_instance_uid=study_uid, server_name="CRASH",
                                 dicom_server=DicomServer.objects.get(name="CRASH"))
    return job


def staged(settings) -> list[Path]:
    return [p for p in Path(settings.STAGING_DIR).rglob("*") if p.is_file() and not p.name.startswith(".")]


@contextlib.contextmanager
def caught_mid_move(pacs, settings):
    """The PACS frozen as soon as the first instances are staged: a move of the whole study takes a
    fraction of a second, so a slower poll, or no freeze, could find it finished before the kill."""
    wait_for(lambda: staged(settings), 60, "the move to be under way", interval=0.001)
    with pacs.frozen():
        assert len(staged(settings)) < INSTANCES, "the move finished before the PACS could be frozen"
        yield


def filed(settings) -> list[str]:
    return [p.stem for p in Path(settings.DOWNLOADS_DIR).rglob("*.dcm")]


def test_a_worker_sigkilled_mid_move_is_reclaimed_and_files_every_instance_once(portal_env, big_study, settings,
                                                                             tmp_path):
    pacs, study_uid = big_study
    job = one_row_job(study_uid)
    cluster_env = {k: v for k, v in portal_env.items() if k != "receiver"}
    first = QCluster(tmp_path / "first.log", JOB_LEASE_SECONDS=3, Q_WORKERS=1, **cluster_env)
    try:
        job.start()
        with caught_mid_move(pacs, settings):
            first.kill()
    finally:
        first.stop()
    assert job.items.get().status == "running" and len(filed(settings)) == 0
    second = QCluster(tmp_path / "second.log", JOB_LEASE_SECONDS=3, Q_WORKERS=1, **cluster_env)
    try:
        wait_for(lambda: RetrievalJob.objects.get(pk=job.pk).status not in ("pending", "running"), 120,
                 "the job to finish on the second cluster")
    finally:
        second.stop()
    item = job.items.get()
    assert item.status == "succeeded" and item.attempts == 2, (item.error, second.output()[-2000:])
    files = filed(settings)
    assert sorted(files) == sorted(pacs.study_instances(study_uid)) and len(files) == INSTANCES, "each once"
    assert staged(settings) == [] and not MoveKey.objects.exists()


def test_the_pacs_killed_mid_transfer_fails_clearly_files_nothing_and_a_retry_succeeds(portal_env, big_study,
                                                                                    settings):
    pacs, study_uid = big_study
    # One association, so the study is one move: killed mid-way, none of it may be filed. (With series
    # in parallel a series that completed before the kill is filed whole, the row still failing.)
    DicomServer.objects.filter(name="CRASH").update(max_associations=1)
    job = one_row_job(study_uid)
    worker = threading.Thread(target=runner.run_item, args=(RetrievalItem._meta.label, job.items.get().pk))
    worker.start()
    try:
        with caught_mid_move(pacs, settings):
            pacs.process.kill()
        worker.join(60)
        item = job.items.get()
        assert item.status == "failed" and "CRASH" in item.error, item.error
        assert filed(settings) == [] and staged(settings) == [] and not MoveKey.objects.exists()
    finally:
        pacs.stop()
        pacs.start()  # the same storage: the study is still there
        pacs.add_modality(PORTAL_AE, PORTAL_AE, settings.DICOM_PORT)
    DicomServer.objects.filter(name="CRASH").update(port=pacs.dicom_port)
    RetrievalJob.objects.get(pk=job.pk).retry_failed()
    runner.run_item(RetrievalItem._meta.label, job.items.get().pk)
    item = job.items.get()
    assert item.status == "succeeded", item.error
    assert sorted(filed(settings)) == sorted(pacs.study_instances(study_uid))
    assert staged(settings) == []


def test_the_receiver_sigkilled_mid_move_is_blamed_what_came_is_kept_and_a_retry_fetches_only_the_rest(
        portal_env, big_study, settings):
    pacs, study_uid = big_study
    job = one_row_job(study_uid)
    worker = threading.Thread(target=runner.run_item, args=(RetrievalItem._meta.label, job.items.get().pk))
    worker.start()
    with caught_mid_move(pacs, settings):
        portal_env["receiver"][0].kill()
        portal_env["receiver"][0].wait()
    worker.join(90)
    item = job.items.get()
    assert item.status == "failed", item.error
    assert f"the portal's receiver {PORTAL_AE} at 127.0.0.1:" in item.error and "manage.py receive" in item.error
    # what the receiver had written whole before it died was checked and filed; the rest is missing, with numbers
    kept = filed(settings)
    assert 0 < len(kept) < INSTANCES and set(kept) <= pacs.study_instances(study_uid)
    assert item.instances == len(kept) and item.result["attempts"] == [{"attempt": 1, "fetched": len(kept), "kept": 0,
                                                                        "bytes": item.bytes}]
    assert staged(settings) == [] and not MoveKey.objects.exists()
    portal_env["receiver"].append(start_receiver({k: v for k, v in portal_env.items() if k != "receiver"}))
    RetrievalJob.objects.get(pk=job.pk).retry_failed()
    runner.run_item(RetrievalItem._meta.label, job.items.get().pk)
    item = job.items.get()
    assert item.status == "succeeded", item.error
    assert sorted(filed(settings)) == sorted(pacs.study_instances(study_uid)) and staged(settings) == []
    assert item.instances == INSTANCES
    assert item.result["attempts"][-1] == {"attempt": 2, "fetched": INSTANCES - len(kept), "kept": len(kept),
                                           "bytes": item.result["attempts"][-1]["bytes"]}, "the retry fetched the rest only"
