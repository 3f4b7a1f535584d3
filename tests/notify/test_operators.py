"""Operator alerts through a real SMTP server: who gets them, and one message per cause per hour however
many reports and processes."""
import subprocess
import sys
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from apps.notify.models import AlertThrottle
from apps.notify.operators import alert_operators
from tests.jobs.cluster import worker_env


def test_a_migration_creates_the_operators_group(db):
    from django.contrib.auth.models import Group

    assert Group.objects.filter(name="operators").exists()


def test_an_alert_reaches_every_operator_and_nobody_else(smtp, operators):
    assert alert_operators("inbox-failed:Radiology", "Inbox Radiology: a run failed", "See /admin/sending/")
    [message] = smtp.inbox.wait_for(1)
    assert sorted(message["X-Envelope-To"].split(", ")) == ["op1@example.org", "op2@example.org"]
    assert message["Subject"] == "[PACS Portal] Inbox Radiology: a run failed"
    assert message["From"] == settings.DEFAULT_FROM_EMAIL
    assert "See /admin/sending/" in smtp.inbox.text(message)


def test_twenty_reports_of_one_cause_send_one_message(smtp, operators):
    sent = [alert_operators("target-refusing:Partner", "Partner refuses deliveries", f"failure {n}")
            for n in range(20)]
    assert sent == [True] + [False] * 19
    other = alert_operators("restarts:receiver", "The receiver keeps restarting", "3 restarts")
    assert other, "another cause has its own hour"
    messages = smtp.inbox.wait_for(2)
    assert [m["Subject"] for m in messages] == ["[PACS Portal] Partner refuses deliveries",
                                               "[PACS Portal] The receiver keeps restarting"]
    assert AlertThrottle.objects.get(cause="target-refusing:Partner").held_back == 19


def test_after_the_hour_the_next_report_mails_again_and_counts_what_was_held(smtp, operators):
    for _ in range(5):
        alert_operators("disk-low:/data", "Disk space low on /data", "3.1 GB free")
    AlertThrottle.objects.filter(cause="disk-low:/data").update(
        sent_at=timezone.now() - timedelta(seconds=settings.OPERATOR_ALERT_SECONDS + 1))
    assert alert_operators("disk-low:/data", "Disk space low on /data", "2.0 GB free")
    first, second = smtp.inbox.wait_for(2)
    assert "4 more report(s)" in smtp.inbox.text(second)
    assert "more report" not in smtp.inbox.text(first)


def test_a_mail_server_that_is_down_is_tried_again_on_the_next_report(settings, operators, free_port, caplog):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port
    assert not alert_operators("restarts:workers", "Workers keep restarting", "5 restarts")
    assert AlertThrottle.objects.get(cause="restarts:workers").sent_at is None
    assert "could not send the e-mail" in caplog.text
    assert "op1@example.org" not in caplog.text


@pytest.mark.django_db(transaction=True)
def test_processes_share_the_hour(smtp, operators, tmp_path):
    """Four processes (as the workers, the receiver and the web are) report one cause five times each,
    at once: one message."""
    script = ("from apps.notify.operators import alert_operators\n"
              "for n in range(5): alert_operators('restarts:receiver', 'The receiver keeps restarting', str(n))\n")
    env = worker_env(EMAIL_URL=smtp.url)
    procs = [subprocess.Popen([sys.executable, "manage.py", "shell", "-c", script], cwd=settings.BASE_DIR,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(4)]
    outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs
    assert len(smtp.inbox.wait_for(1)) == 1
    assert AlertThrottle.objects.get(cause="restarts:receiver").held_back == 19
    assert len(smtp.inbox.messages) == 1
