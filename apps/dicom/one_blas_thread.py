"""Imported first where decoders start (the forkserver of apps/imports/pool.py), before numpy: numpy's OpenBLAS
starts a thread per core when it loads, which cost that process ~0.1 s of CPU (0.19-0.30 s instead of
0.32-0.39 s for its start); a decoder does no linear algebra (a gather and a JPEG encode), and the pool's
processes are the parallelism. A value the environment sets is kept."""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
