"""Who sees which jobs. A user sees, cancels and retries only the jobs they started, unless they hold
"view all jobs" (superusers hold every permission). Used by the job API (JobViewSetMixin), the job admin
(JobAdminMixin) and the progress endpoint, so every job app inherits the same rule; another user's job
is simply not there (404), never "forbidden", which would tell that it exists."""
from pacsportal.permissions import model_permission

VIEW_ALL_JOBS = "jobs.view_all_jobs"


def sees_all_jobs(user) -> bool:
    return bool(user and user.is_authenticated and user.has_perm(VIEW_ALL_JOBS))


def visible_jobs(queryset, user):
    """The jobs of `queryset` this user may see."""
    if sees_all_jobs(user):
        return queryset
    if not (user and user.is_authenticated):
        return queryset.none()
    return queryset.filter(created_by=user)


def start_permission(job_model) -> str:
    """The permission that starts a job of this kind: the job's own `start_permission` when it names one
    (retrieval: "retrieval.start_retrieval"), else Django's add permission of the model."""
    return getattr(job_model, "start_permission", None) or model_permission(job_model, "add")


def job_permissions(job_model) -> dict[str, list[str]]:
    """Permissions per API action of a job viewset: start, see, cancel/retry/pause/resume (change)."""
    view, change = model_permission(job_model, "view"), model_permission(job_model, "change")
    return {"list": [view], "retrieve": [view], "create": [start_permission(job_model)],
            "cancel": [change], "retry": [change], "pause": [change], "resume": [change]}
