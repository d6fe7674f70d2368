"""roger_cluster's benchmarks. `python -m benchmarks` (or `bash benchmarks/run`) runs the suite,
`benchmarks/suite/`; `bench_core.py` and `peers/run.py` also run on their own. See README.md."""
