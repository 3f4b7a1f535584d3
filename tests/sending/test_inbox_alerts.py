"""An inbox run that fails tells the operators, through a real SMTP server: once per inbox per hour, naming
the inbox and the run, never the folder (named after its patient)."""
import pytest

from apps.jobs.models import JobStatus
from apps.notify.models import AlertThrottle
from tests.notify.conftest import operators, smtp  # noqa: F401  (fixtures)
from tests.sending.conftest import run_items
from tests.sending.test_inbox import KOREAN, inbox, korean_folder, ready, watcher  # noqa: F401  (fixtures)

pytestmark = pytest.mark.orthanc


def test_a_failed_inbox_run_mails_the_operators_once_without_the_folder_name(inbox, watcher, pacs, free_port,  # noqa: F811
                                                                            smtp, operators):  # noqa: F811
    pacs.port = free_port  # the destination is down
    pacs.save()
    korean_folder(inbox)
    [run] = ready(watcher)
    run_items(run)
    assert run.status == JobStatus.FAILED
    run.refresh_status()  # settled again by another worker: still one message

    [message] = smtp.inbox.wait_for(1)
    text = smtp.inbox.text(message)
    assert message["Subject"] == "[PACS Portal] Inbox ward: a run failed"
    assert f"Run #{run.pk} of the inbox ward ended failed" in text
    assert f"/admin/sending/sendjob/{run.pk}/change/" in text
    for word in (KOREAN, "00042", run.folder, *KOREAN.split("^")):
        assert word not in text
    assert AlertThrottle.objects.get(cause="inbox-failed:ward").held_back >= 1
    assert len(smtp.inbox.messages) == 1
