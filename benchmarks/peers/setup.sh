#!/usr/bin/env bash
# Create benchmarks/peers/.venv with Celery and Dramatiq from PyPI (requirements.txt).
# Idempotent: a venv whose installed requirements match is left as it is.
# PYTHON picks the interpreter (default: python3.11, else python3).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-$(command -v python3.11 || command -v python3)}"
stamp="$venv/.requirements"
if [[ -x "$venv/bin/python" && -f "$stamp" ]] && cmp -s "$stamp" "$here/requirements.txt"; then
    exit 0
fi
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
cp "$here/requirements.txt" "$stamp"
echo "peers venv ready: $venv" >&2
