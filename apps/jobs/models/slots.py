from django.db import models


class AssociationSlot(models.Model):
    """One of a server's max_associations permits, shared by every worker process through the database.
    A free slot has no holder; a held slot carries an expiry that its holder's heartbeat keeps pushing
    forward, so a slot held by a killed worker frees itself after JOB_LEASE_SECONDS."""

    server = models.ForeignKey("servers.DicomServer", on_delete=models.CASCADE, related_name="+")
    number = models.PositiveSmallIntegerField()
    holder = models.CharField(max_length=200, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["server", "number"], name="jobs_one_slot_per_number")]

    def __str__(self) -> str:
        return f"slot {self.number} of server {self.server_id}"
