"""The benchmark suite: one command, one table (`bash benchmarks/run`, or `python -m benchmarks`).

Every figure comes from the same run against the same RabbitMQ: the bare aio-pika ceiling
(`ceiling.py`), Celery and Dramatiq (`peers/run.py`, in its own venv), roger_cluster itself
(`ours.py`, `timing.py`) and, when `bench_growth.py` is present, the growth figures. `suite.py`
puts them in order; `report.py` prints them. Nothing here is a test: targets missed are reported,
not raised. What each figure means: docs/performance.md.
"""
