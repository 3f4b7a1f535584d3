"""Association slots hold across processes: items run by separate worker processes against a server
with max_associations=2 never open more than 2 associations at once."""
import subprocess
import sys

import pytest
from django.conf import settings

from apps.jobs.models import AssociationSlot
from apps.servers.models import EchoItem
from tests.jobs.cluster import worker_env
from tests.jobs.conftest import make_echo_job, make_server
from tests.jobs.peers import RecordingEchoSCP

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("limit,expected_most_open", [(2, 2), (6, range(3, 7))])
def test_separate_processes_share_the_association_limit(limit, expected_most_open):
    scp = RecordingEchoSCP(delay=2.0)
    try:
        server = make_server("LK", scp.port, max_associations=limit)
        job = make_echo_job([server] * 6)
        job.start()
        code = "from apps.jobs.runner import run_item; print(run_item('servers.EchoItem', {}))"
        workers = [subprocess.Popen([sys.executable, "manage.py", "shell", "-c", code.format(item.pk)],
                                    cwd=settings.BASE_DIR, env=worker_env(), stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True) for item in job.items.all()]
        outputs = [w.communicate(timeout=120)[0] for w in workers]
    finally:
        scp.shutdown()
    # A worker goes on with its job's next items: one started late (a loaded machine) may find its own item
    # run already ("not pending"); every item succeeding is asserted below.
    assert all(out.strip().endswith(("succeeded", "not pending")) for out in outputs), outputs
    assert scp.most_open in expected_most_open if isinstance(expected_most_open, range) \
        else scp.most_open == expected_most_open
    assert not AssociationSlot.objects.exclude(holder="").exists()  # every slot given back
    assert set(EchoItem.objects.values_list("status", flat=True)) == {"succeeded"}
