"""What an import item does (registered with the runner in apps.py): the scan lists the tree and cuts it
into batches (scan.py); a batch imports its files (batch.py)."""
from apps.imports.batch import import_batch
from apps.imports.scan import scan_tree


def import_item(item, ctx) -> None:
    if item.kind == item.Kind.SCAN:
        scan_tree(item, ctx)
    else:
        import_batch(item, ctx)
