"""`python -m benchmarks`: the benchmark suite (see benchmarks/suite/main.py)."""

import sys

from benchmarks.suite.main import main

sys.exit(main())
