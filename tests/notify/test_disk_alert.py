"""Low disk space reaches the operators through a real SMTP server: one message for several reports, naming
the folder and the sizes, nothing of a patient."""
import pytest

from apps.jobs import diskspace
from tests.jobs.test_diskspace import free  # noqa: F401  (the injected free-space fixture)

GB = 10 ** 9




@pytest.fixture
def operator(db, django_user_model):
    """One member of the operators group (the group made here too: a transactional test before may have
    flushed the one the migration created)."""
    from django.contrib.auth.models import Group

    member = django_user_model.objects.create_user(username="op", email="op@example.org")
    Group.objects.get_or_create(name="operators")[0].user_set.add(member)
    return member


def test_the_operators_get_one_mail_naming_the_folder_and_no_patient(free, smtp, operator, tmp_path):  # noqa: F811
    free["staging"] = int(3.1 * GB)
    for _ in range(3):
        diskspace.watch()
        diskspace._alerted.clear()  # as if three processes noticed: the mail's own throttle holds
    [message] = smtp.inbox.wait_for(1)
    assert message["Subject"] == "[PACS Portal] Low disk space on the staging folder"
    assert f"3.1 GB free on {tmp_path}/staging, 10 GB required (MIN_FREE_GB)" in smtp.inbox.text(message)
