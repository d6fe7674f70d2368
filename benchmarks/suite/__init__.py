"""The benchmark suite: one command, one table, every figure from the same run and broker.

The bare aio-pika ceiling (`ceiling.py`, `bare.py`), Celery and Dramatiq (`peers/run.py`, run by
`others.py`), roger_cluster itself (`ours.py`, `timing.py`, on nodes running `jobs.py`) and the
growth figures (`bench_growth.py`, when present). `main.py` orders the work, `figures.py` turns it
into rows with their targets, `report.py` prints them. Nothing here is a test: a missed target
is reported, not raised. What each figure means: docs/performance.md.
"""
