"""Test helpers: a configured server for a PACS and a live move key for one of its studies."""
from apps.retrieval.models import MoveKey, RetrievalItem, RetrievalJob
from apps.servers.models import DicomServer


def live_move_key(pacs, study_uid: str, message_id: int, *, name: str = "KEYED") -> MoveKey:
    """Declare `pacs` (an Orthanc fixture) as a server and hold move key `message_id` for `study_uid`."""
    peer = pacs.peer()
    server, _ = DicomServer.objects.get_or_create(name=name, defaults=dict(ae_title=peer.ae_title, host=peer.host,
                                                                            port=peer.port))
    job = RetrievalJob.objects.create(source_name="keys")
    item = RetrievalItem.objects.create(job=job, line=1, study_instance_uid=study_uid, dicom_server=server,
                                        server_name=server.name)
    key = MoveKey.allocate(item, server.ae_title, study_uid, seconds=300)
    MoveKey.objects.filter(pk=key.pk).update(message_id=message_id)
    key.message_id = message_id
    return key
