"""roger_cluster's benchmarks. `python -m benchmarks` (or `bash benchmarks/run`) runs the suite,
`benchmarks/suite/`; `peers/run.py` and `profile_drain.py` also run on their own. See README.md."""
