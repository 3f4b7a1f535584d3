"""Who did what, when. `record()` is the one call every app uses for actions (job started, study
retrieved, photo stored...); model changes (e.g. DicomServer edits) are recorded by django-auditlog."""
from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("apps.audit")


def target_label(target: Any) -> str:
    """"app.Model:pk" for a model instance, the text itself otherwise. Targets name rows, never patients."""
    meta = getattr(target, "_meta", None)
    if meta is not None:
        return f"{meta.label}:{target.pk}"
    return str(target)


def request_address() -> str | None:
    """The client address of the web request being served (set by auditlog's middleware); None in a worker."""
    from auditlog.context import auditlog_value

    try:
        return auditlog_value.get().get("remote_addr") or None
    except LookupError:
        return None


def track_changes(model, **options: Any) -> None:
    """Have django-auditlog record `model`'s changes (who, when, which fields, old -> new), with auditlog's
    register() options (exclude_fields, mask_fields, m2m_fields...). Called from an app's ready(); once
    registered, a model keeps its first options."""
    from auditlog.registry import auditlog

    if not auditlog.contains(model):
        auditlog.register(model, **options)


def record(actor: Any, action: str, target: Any = "", **details: Any):
    """Store one AuditEvent. `actor` is a user, None (the system) or a name such as "inbox-watcher"."""
    from apps.audit.models import AuditEvent  # imported late: this module is imported before models load

    user = actor if getattr(actor, "is_authenticated", False) else None
    if user is not None:
        actor_name = user.get_username()
    else:
        actor_name = actor if isinstance(actor, str) else "system"
    event = AuditEvent.objects.create(
        actor=user, actor_name=actor_name, action=action, target=target_label(target), details=details,
        client_address=request_address(),
    )
    # Details may name patients, so they stay in the database; the log line carries no patient data.
    log.info("audit action=%s actor=%s target=%s", action, actor_name, event.target)
    return event
