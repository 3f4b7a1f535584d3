"""Sending one message; a mail server that is down is logged (without the recipients' addresses or the
body) and never breaks the work that wanted to tell someone."""
import logging

from django.conf import settings
from django.core.mail import send_mail

log = logging.getLogger("apps.notify")


def send(recipients: list[str], subject: str, body: str) -> bool:
    recipients = sorted({r for r in recipients if r})
    if not recipients:
        return False
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=False)
    except Exception as exc:  # any backend's failure: SMTP refusals, a refused connection, a timeout
        log.error("could not send the e-mail %r to %d recipient(s): %s", subject, len(recipients), exc)
        return False
    return True


def link(path: str) -> str:
    """An absolute link to a page of the portal (PORTAL_URL + path)."""
    return f"{settings.PORTAL_URL}{path}"
