"""A delivery to a PACS (C-STORE or STOW-RS) honours its server's pause and send windows as every other
send does: its batches wait with the reason, nothing reaches the PACS and no source file is touched, and
they go once the server is resumed or its window opens — against a real Orthanc."""
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from apps.delivery.models import DeliveryJob, DeliveryTarget
from apps.jobs import runner
from apps.servers import windows
from apps.servers.models import DicomServer
from tests.delivery.conftest import sha1_tree
from tests.jobs.test_priority import drain

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.orthanc]
BERLIN = ZoneInfo("Europe/Berlin")
DAYTIME = [{"direction": "send", "start": "08:00", "end": "18:00"}]


def pacs_target(orthanc, kind="dicom", **fields) -> DeliveryTarget:
    peer = orthanc.peer()
    server = DicomServer.objects.create(name="SPARE", ae_title=peer.ae_title, host=peer.host, port=peer.port,
                                        retries=0, **fields)
    return DeliveryTarget.objects.create(name="PACS", kind=kind, server=server)


def test_a_paused_pacs_holds_the_delivery_until_it_is_resumed(retrieved, empty_orthanc, user, broker,
                                                              django_capture_on_commit_callbacks):
    before = sha1_tree(retrieved.source)
    target = pacs_target(empty_orthanc, paused=True)
    with django_capture_on_commit_callbacks(execute=True):
        job = DeliveryJob.for_retrieval(retrieved, target, user=user, batch_size=4)
    drain(broker)
    batches = list(job.items.order_by("number"))
    assert [b.status for b in batches] == ["pending", "pending"] and all(b.attempts == 0 for b in batches)
    assert job.waiting_reason() == "Paused: server SPARE is paused by an operator."
    assert empty_orthanc.instances() == set() and sha1_tree(retrieved.source) == before

    with django_capture_on_commit_callbacks(execute=True):  # the server's post_save wakes what waited
        DicomServer.objects.get(name="SPARE").save()  # saved, still paused: held again
    drain(broker)
    assert empty_orthanc.instances() == set() and job.waiting_reason().startswith("Paused: server SPARE")

    server = DicomServer.objects.get(name="SPARE")
    server.paused = False
    with django_capture_on_commit_callbacks(execute=True):
        server.save()
    drain(broker)
    job.refresh_from_db()
    assert job.status == "succeeded", [b.error for b in job.items.all()]
    assert len(empty_orthanc.instances()) == 30 and sha1_tree(retrieved.source) == {}


def test_a_closed_send_window_holds_the_delivery_until_it_opens(retrieved, empty_orthanc, user, broker,
                                                                settings, monkeypatch,
                                                                django_capture_on_commit_callbacks):
    settings.TIME_ZONE = "Europe/Berlin"
    clock = {"now": datetime(2026, 12, 8, 22, 0, tzinfo=BERLIN)}  # Tuesday night: opens at 08:00
    monkeypatch.setattr(windows, "now", lambda: clock["now"])
    target = pacs_target(empty_orthanc, windows=DAYTIME)
    with django_capture_on_commit_callbacks(execute=True):
        job = DeliveryJob.for_retrieval(retrieved, target, user=user, batch_size=6)
    drain(broker)
    assert job.items.get().status == "pending"
    assert job.waiting_reason() == "Waiting for the window of SPARE, opens wed at 08:00 (send)."
    assert empty_orthanc.instances() == set()

    clock["now"] = datetime(2026, 12, 9, 8, 0, tzinfo=BERLIN)
    runner.sweep()
    drain(broker)
    job.refresh_from_db()
    assert job.status == "succeeded", [b.error for b in job.items.all()]
    assert len(empty_orthanc.instances()) == 30


def test_a_folder_or_portal_target_has_no_server_to_hold_it(retrieved, user):
    folder = DeliveryTarget.objects.create(name="BOX", kind="folder", path="/nowhere")
    job = DeliveryJob.for_retrieval(retrieved, folder, user=user, batch_size=6, start=False)
    batch = job.items.model(job=job, number=1)
    assert batch.servers() == [] and batch.direction() is None
