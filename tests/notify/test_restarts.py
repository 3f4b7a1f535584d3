"""A part of the portal that keeps dying tells the operators once (apps/dicom/supervisor.py's on_death,
apps/notify/restarts.py), through a real SMTP server, from a real supervisor restarting a real process."""
import sys

import pytest
from django.conf import settings

from apps.dicom.supervisor import Supervisor
from apps.notify import restarts
from apps.notify.models import AlertThrottle
from tests.jobs.cluster import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_part_dying_again_and_again_sends_one_message(smtp, operators):
    deaths = []

    def on_death(child):
        deaths.append(child.quick_deaths)
        restarts.on_death(child)

    supervisor = Supervisor({"receiver": [sys.executable, "-c", "raise SystemExit(3)"]}, cwd=settings.BASE_DIR,
                            say=lambda line: None, first_delay=0.01, max_delay=0.02, on_death=on_death)
    supervisor.start_all()
    try:
        wait_for(lambda: supervisor.poll() or len(deaths) >= 6, 60, "six deaths", interval=0.01)
    finally:
        supervisor.stop_all()
    assert deaths[:3] == [1, 2, 3]
    [message] = smtp.inbox.wait_for(1)
    assert message["Subject"].startswith("[PACS Portal] receiver keeps restarting on ")
    assert "died 3 times in a row" in smtp.inbox.text(message)
    assert "exited with code 3" in smtp.inbox.text(message)
    wait_for(lambda: AlertThrottle.objects.get(cause="restarts:receiver").held_back == len(deaths) - 3, 30,
             "the later deaths held back")
    assert len(smtp.inbox.messages) == 1


def test_a_single_death_does_not_alert(smtp, operators):
    supervisor = Supervisor({"workers": [sys.executable, "-c", "raise SystemExit(1)"]}, cwd=settings.BASE_DIR,
                            say=lambda line: None, first_delay=5, on_death=restarts.on_death)
    supervisor.start_all()
    try:
        wait_for(lambda: supervisor.poll() or supervisor.children[0].problem, 30, "the death noticed")
    finally:
        supervisor.stop_all()
    assert not AlertThrottle.objects.filter(cause="restarts:workers").exists()
