"""django-q2 tasks of retrieval (the rows themselves run through apps.jobs.runner)."""
from apps.retrieval import intake
from apps.retrieval.models import RetrievalJob


def prepare_job(job_id: int) -> None:
    """Create and start the rows of a long case list, after the upload has answered."""
    job = RetrievalJob.objects.filter(pk=job_id, preparing=True).first()
    if job is not None:
        intake.prepare(job)
