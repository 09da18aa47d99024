# Sourced by run-example, run-tests and .ci/run: make sure .venv exists and holds
# exactly what requirements.lock pins (every package with its hash), then the
# project itself. Re-installs when the lock or pyproject.toml changes.
#
# The lock is refreshed on purpose with scripts/lock.sh; scripts/try-latest.sh
# tries the newest releases the pyproject ranges allow, without touching .venv.
set -euo pipefail
PYTHON="${PYTHON:-python3}"
stamp=".venv/.installed-$(cat pyproject.toml requirements.lock | sha256sum | cut -c1-16)"
if [ ! -x .venv/bin/python ] || [ ! -f "$stamp" ]; then
    echo "setting up .venv from requirements.lock (first run, or the lock changed) ..." >&2
    rm -rf .venv
    "$PYTHON" -m venv .venv
    # --no-deps: the lock is complete; --require-hashes: every file is the one locked.
    .venv/bin/python -m pip install --quiet --disable-pip-version-check \
        --require-hashes --no-deps -r requirements.lock
    # The project itself, built with the locked setuptools (no download).
    .venv/bin/python -m pip install --quiet --disable-pip-version-check \
        --no-deps --no-build-isolation -e .
    touch "$stamp"
fi
# The browser tests need Debian's chromium and chromedriver: install them when we
# can (root with apt-get); otherwise those tests fail saying how to install them.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        scripts/install-browser.sh
    fi
fi
