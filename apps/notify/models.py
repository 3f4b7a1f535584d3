"""What notifications need to remember: who wants job-end mail, when each operator alert was last sent,
and which job endings were already mailed (one message per job end, whichever process saw it end)."""
from django.conf import settings
from django.db import models


class MailPreference(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mail_preference")
    job_ended = models.BooleanField(default=False, help_text="E-mail me when any of my jobs ends.")

    class Meta:
        verbose_name = "e-mail setting"

    def __str__(self) -> str:
        return f"e-mail setting of {self.user}"

    @classmethod
    def wants_job_mail(cls, user) -> bool:
        return bool(user is not None and cls.objects.filter(user=user, job_ended=True).exists())


class AlertThrottle(models.Model):
    """One row per cause ("inbox-failed:Radiology", "disk-low:/data"): the last message and how many
    reports were held back since; the compare-and-set on `sent_at` is what several processes share."""
    cause = models.CharField(max_length=200, unique=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    held_back = models.PositiveIntegerField(default=0, help_text="Reports since the last message, not mailed.")
    last_subject = models.CharField(max_length=200, blank=True)

    class Meta:
        verbose_name = "operator alert"

    def __str__(self) -> str:
        return self.cause


class JobMail(models.Model):
    """A job end that was mailed: the unique key lets exactly one process send it."""
    job = models.CharField(max_length=100, help_text='"app.model:pk" of the job.')
    ended_at = models.DateTimeField()
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "ended_at"], name="notify_one_mail_per_job_end")]
