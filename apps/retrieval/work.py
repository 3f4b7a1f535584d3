"""What a retrieval row does when a worker runs it (registered with the runner in apps.py): the query,
moves and filing are retrieve.py's; a query job's row only queries (querying.py)."""
from apps.retrieval.fanout import row_servers
from apps.retrieval.querying import check_before_moving, query_row
from apps.retrieval.retrieve import retrieve_row


def retrieve(item, ctx) -> None:
    # Access is checked again when the row runs: it may have been withdrawn since the list was read.
    row_servers(item, ctx)  # every server of the row, in its order: ItemFailed naming one the owner may not use
    if item.job.mode == "query":
        query_row(item, ctx)
        return
    check_before_moving(item, ctx)  # a shared accession number, or more studies than MaxStudies: nothing moves
    retrieve_row(item, ctx)
