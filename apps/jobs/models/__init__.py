from apps.jobs.models.access import JobAccess
from apps.jobs.models.base import JOB_PAUSED, ItemStatus, Job, JobItem, JobStatus, derive_job_status
from apps.jobs.models.pauses import AppPause
from apps.jobs.models.slots import AssociationSlot

__all__ = ["JOB_PAUSED", "AppPause", "AssociationSlot", "ItemStatus", "JobAccess", "Job", "JobItem", "JobStatus", "derive_job_status"]
