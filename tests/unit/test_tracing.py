"""Without OpenTelemetry installed, tracing costs one failed import and nothing after."""

from __future__ import annotations

import subprocess
import sys


def test_without_opentelemetry_tracing_is_off_and_injects_nothing() -> None:
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "from roger_cluster import tracing\n"
        "assert not tracing.ENABLED\n"
        "assert tracing.inject() is None\n"
        "with tracing.job_span({'traceparent': 'x'}, 'perform', {}) as span:\n"
        "    assert span is None\n"
        "from roger_cluster.runtime import worker\n"
        "print('ok')\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.stdout.strip() == "ok", run.stderr
