"""A delivery target that keeps refusing tells the operators once per hour, however many batches it
refuses, through a real SMTP server and a real Orthanc that rejects the association."""
import pytest

from apps.delivery.models import DeliveryJob, DeliveryTarget
from apps.notify.models import AlertThrottle
from tests.delivery.conftest import run_released
from tests.delivery.test_delivery_pacs_and_folders import pacs_server
from tests.notify.conftest import operators, smtp  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.orthanc]


def test_six_refused_batches_send_one_message_naming_the_target(retrieved, empty_orthanc, user, smtp, operators):  # noqa: F811
    target = DeliveryTarget.objects.create(name="PARTNER", kind="dicom",
                                           server=pacs_server(empty_orthanc, ae_title="WRONGAET"))
    job = DeliveryJob.for_retrieval(retrieved, target, user=user, batch_size=1)
    run_released(job)
    assert job.status == "failed" and job.items.count() == 6

    [message] = smtp.inbox.wait_for(1)
    text = smtp.inbox.text(message)
    assert message["Subject"] == "[PACS Portal] Delivery target PARTNER refuses batches"
    assert f"delivery job #{job.pk} to the target PARTNER (dicom) failed" in text
    assert f"/admin/delivery/deliveryjob/{job.pk}/change/" in text
    assert AlertThrottle.objects.get(cause="target-refusing:PARTNER").held_back == 5
    for item in retrieved.items.all():
        assert item.patient_id not in text and item.path not in text
    assert len(smtp.inbox.messages) == 1
