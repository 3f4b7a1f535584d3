"""The DICOM protocol written directly on sockets, for the paths where the Python spent per message is the
throughput: a PACS answering a C-MOVE or C-GET waits for our answer to every C-STORE before it sends the
next instance, and a PACS we send to answers each C-STORE before the next may go. pynetdicom spends about 3
ms of Python per message there (PDU objects, its reactor's 1 ms sleep, a pydicom Dataset per command), a
quarter to a half of DCMTK's throughput; these modules read PDUs into buffers, keep dataset fragments as
views of them and encode command sets by hand (figures: docs/architecture.md, "The wire layer").

Here: the receiver's Storage SCP (storage_scp.py), and every SCU of the retrieval and sending paths — the
C-GET (get_scu.py), the C-MOVE request (move_scu.py), a retrieval row's C-FINDs (find_scu.py) and C-STORE
(store_scu.py) — on one upper layer (pdu.py, requestor.py), one DIMSE command codec (commands.py) and one
message reassembler (messages.py). Callers use them through apps/dicom/scu.py, which states their contract.
pynetdicom serves echo, the browsing queries and the demo PACS, where one message per request makes its cost
irrelevant."""
