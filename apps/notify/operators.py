"""alert_operators(cause, subject, body): e-mail the members of the "operators" group that something needs
a person. One message per cause per OPERATOR_ALERT_SECONDS: the first report in that time claims the
cause's AlertThrottle row with a compare-and-set in the database, so several workers, the receiver and the
web process reporting the same cause send one message together; the others count as held back and the
next message says how many there were."""
import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.notify import mail
from apps.notify.models import AlertThrottle

OPERATORS_GROUP = "operators"
log = logging.getLogger("apps.notify")


def operator_addresses() -> list[str]:
    users = get_user_model().objects.filter(groups__name=OPERATORS_GROUP, is_active=True).exclude(email="")
    return list(users.values_list("email", flat=True).distinct())


def _claim(cause: str, subject: str) -> tuple[bool, int]:
    """(this report sends the message, reports held back before it)."""
    now = timezone.now()
    try:
        with transaction.atomic():
            AlertThrottle.objects.get_or_create(cause=cause)
    except IntegrityError:  # another process created it in between: fine, it exists now
        pass
    due = Q(sent_at__isnull=True) | Q(sent_at__lte=now - timedelta(seconds=settings.OPERATOR_ALERT_SECONDS))
    row = AlertThrottle.objects.filter(cause=cause)
    held = row.values_list("held_back", flat=True).first() or 0
    if row.filter(due).update(sent_at=now, held_back=0, last_subject=subject[:200]):
        return True, held
    row.update(held_back=F("held_back") + 1)
    return False, 0


def alert_operators(cause: str, subject: str, body: str) -> bool:
    """Tell the operators, unless this cause was mailed within OPERATOR_ALERT_SECONDS. `cause` names the
    thing ("inbox-failed:<inbox>", "restarts:<part>", "disk-low:<folder>", "target-refusing:<target>"),
    `subject` and `body` say what happened and what to look at: no patient identifiers in any of them.
    Returns True when a message went out."""
    claimed, held = _claim(cause[:200], subject)
    if not claimed:
        return False
    if held:
        body = f"{body}\n\n{held} more report(s) of this cause were not mailed since the last message."
    addresses = operator_addresses()
    if not addresses:
        log.warning("operator alert %r: nobody in the %r group has an e-mail address", cause, OPERATORS_GROUP)
        return False
    sent = mail.send(addresses, f"[PACS Portal] {subject}", body)
    if not sent:  # let the next report try again rather than stay silent for an hour
        AlertThrottle.objects.filter(cause=cause[:200]).update(sent_at=None)
    return sent
