from django.conf import settings
from django.db import models
from django.utils import timezone


class AppPause(models.Model):
    """A whole app's jobs paused (all retrievals, all sends, ...): while its row exists no worker starts an
    item of that app; deleting it resumes them (apps/jobs/holds.py)."""

    app_label = models.CharField(max_length=100, unique=True, help_text="The app whose jobs are paused.")
    paused_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")
    paused_at = models.DateTimeField(default=timezone.now)

    class Meta:
        default_permissions = ("view",)
        verbose_name = "paused app"
        ordering = ["app_label"]

    def __str__(self) -> str:
        return f"{self.app_label} paused"
