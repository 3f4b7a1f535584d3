"""Who sees what through DICOMweb: a user sees the instances of their own jobs (and what they stored or
received), holders of "view all jobs" see every instance; everything else is absent, never forbidden, so
a search does not find it and a guessed UID is a 404."""
from apps.catalog.models import Instance
from apps.jobs.access import sees_all_jobs


def visible(user):
    if sees_all_jobs(user):
        return Instance.objects.all()
    if not (user and user.is_authenticated):
        return Instance.objects.none()
    return Instance.objects.filter(owner=user)
