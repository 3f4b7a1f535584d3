"""The DICOM protocol written directly on sockets, where pynetdicom's per-message cost is the throughput:
the Storage SCP of the receiver (storage_scp.py) and the C-GET SCU (get_scu.py), on one upper layer
(pdu.py), one DIMSE command codec (commands.py) and one message reassembler (messages.py). The rest of
the DICOM layer (queries, C-MOVE requests, sending) stays on pynetdicom."""
