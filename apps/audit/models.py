from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


class AuditEvent(models.Model):
    """One action someone (or the system) took. Written by `apps.audit.record`, never edited."""

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="audit_events")
    # Kept beside the foreign key so the trail still names the person after the account is deleted.
    actor_name = models.CharField(max_length=150)
    action = models.CharField(max_length=64, db_index=True, help_text='e.g. "job.started"')
    target = models.CharField(max_length=200, blank=True, help_text='e.g. "retrieval.RetrievalJob:12"')
    details = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    client_address = models.GenericIPAddressField(null=True, blank=True,
                                                  help_text="Where the request came from (empty: a worker).")
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = "audit event"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.target}"
