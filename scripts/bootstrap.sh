# Sourced by run-example and run-tests: make sure .venv exists and holds the
# project as pyproject.toml describes it now. Re-installs when pyproject changes.
set -euo pipefail
PYTHON="${PYTHON:-python3}"
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -x .venv/bin/python ] || [ ! -f "$stamp" ]; then
    echo "setting up .venv (first run, or pyproject.toml changed) ..." >&2
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e '.[dev]'
    rm -f .venv/.installed-*
    touch "$stamp"
fi
