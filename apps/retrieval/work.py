"""What a retrieval row does when a worker runs it (registered with the runner in apps.py): the query,
moves and filing are retrieve.py's."""
from apps.jobs.errors import ItemFailed
from apps.retrieval.retrieve import retrieve_row


def retrieve(item, ctx) -> None:
    # Access is checked again when the row runs: it may have been withdrawn since the list was read.
    if not item.dicom_server.may(item.job.created_by, "retrieve"):
        raise ItemFailed(item.dicom_server.refusal("retrieve"))
    retrieve_row(item, ctx)
