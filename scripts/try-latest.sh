#!/usr/bin/env bash
# Try the newest releases that pyproject.toml allows, in a scratch venv, without
# touching .venv or the lock: an upstream release that breaks the project shows
# here first, and main keeps installing from requirements.lock meanwhile.
#
#   scripts/try-latest.sh            the generated-file checks and the fast tests
#   scripts/try-latest.sh -m ""      ... or any pytest arguments (here: every test)
#
# When it passes and you want the new versions: scripts/lock.sh --upgrade, run the
# tests, and commit the lock on its own.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch" build' EXIT
python3 -m venv "$scratch/venv"
py="$scratch/venv/bin/python"
"$py" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$py" -m pip install --quiet --disable-pip-version-check --upgrade --upgrade-strategy eager '.[dev]'
"$py" -m pip freeze --exclude-editable | sed 's/^/  /'
"$py" -m contracts --check
if [ "$#" -eq 0 ]; then set -- -m "not slow"; fi
# The project code is the checkout (python -m puts it first on sys.path).
exec "$py" -m pytest -q -p no:cacheprovider "$@"
