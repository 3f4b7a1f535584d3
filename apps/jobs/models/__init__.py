from apps.jobs.models.access import JobAccess
from apps.jobs.models.base import ItemStatus, Job, JobItem, JobStatus, derive_job_status
from apps.jobs.models.slots import AssociationSlot

__all__ = ["AssociationSlot", "ItemStatus", "JobAccess", "Job", "JobItem", "JobStatus", "derive_job_status"]
