"""The demo PACS (a Query/Retrieve SCP over a folder of files, qrscp.py with its matching in qrmatch.py) and
the synthetic studies it serves (synthetic.py). Used by `manage.py demo_pacs`, tests and benchmarks; nothing
in the production path imports it."""
