#!/usr/bin/env bash
# Refresh requirements.lock from pyproject.toml: exact versions and hashes of every
# package (the dev extra included), for every platform and Python >= 3.11.
#
#   scripts/lock.sh                 keep current pins where still allowed, add new ones
#   scripts/lock.sh --upgrade       move every package to the newest allowed release
#   scripts/lock.sh -P numpy        move just one package
#
# Commit the new lock on its own, after ./run-tests passed with it.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools/venv"
"$tools/venv/bin/python" -m pip install --quiet "uv==$UV_VERSION"
"$tools/venv/bin/uv" pip compile pyproject.toml lock-extra.in \
    --extra dev \
    --universal \
    --python-version 3.11 \
    --generate-hashes \
    --index-url https://pypi.org/simple \
    --custom-compile-command "scripts/lock.sh" \
    --output-file requirements.lock \
    "$@"
