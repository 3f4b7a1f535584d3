"""job_refreshed(sender=JobModel, job=job): sent after a job re-derived its status from its items (an
item finished, the job started, was canceled or retried). Other apps follow a job's progress with it."""
from django.dispatch import Signal

job_refreshed = Signal()
