"""What a retrieval row does when a worker runs it (registered with the runner in apps.py): the query,
moves and filing are retrieve.py's."""
from apps.jobs.errors import ItemFailed
from apps.retrieval.retrieve import retrieve_row


def retrieve(item, ctx) -> None:
    # Access is checked again when the row runs: it may have been withdrawn since the list was read.
    if not item.dicom_server.may(item.job.created_by, "retrieve"):
        raise ItemFailed(item.dicom_server.refusal("retrieve"))
    if item.job.project_id:  # never file identified data for a job that asked for a project
        raise ItemFailed(f"Retrieving for research project {item.job.project} is not available yet: nothing was "
                         "retrieved (the de-identifying filing is not wired into retrieval).")
    retrieve_row(item, ctx)
