#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: creates .venv, installs achbatch with its test
# extras, makes sure the services the tests talk to are up, then runs pytest.
# Extra arguments are passed to pytest (e.g. scripts/test.sh -k conformance).
# `scripts/test.sh unit [ARGS]` runs only tests/unit (no database, no network, no service set up,
# property tests drawing a tenth of their examples: seconds); tests/integration needs PostgreSQL,
# OpenSSH, gpg and Chromium; tests/e2e runs the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

if [ "${1:-}" = "unit" ]; then
    shift
    # The quick feedback run: property tests draw a tenth of their examples (tests/examples.py);
    # the whole suite (no argument, as CI runs it) draws them all.
    export ACHBATCH_QUICK=${ACHBATCH_QUICK:-1}
    exec .venv/bin/python -m pytest tests/unit "$@"
fi

. scripts/apt.sh

# OpenSSH's server: the transport tests start a private sshd on 127.0.0.1 (tests/sshd.py).
if [ ! -x /usr/sbin/sshd ]; then
    echo "installing openssh-server (needed by the SFTP tests)" >&2
    if ! apt_install openssh-server; then
        echo "ERROR: cannot install openssh-server; the SFTP tests need /usr/sbin/sshd" >&2
        exit 1
    fi
    [ -x /usr/sbin/sshd ] || { echo "ERROR: openssh-server installed but /usr/sbin/sshd is missing" >&2; exit 1; }
fi

# PostgreSQL on 127.0.0.1:5432 (scripts/pg_setup.sh): as root installed, created, started and let in
# from 127.0.0.1 as needed; without root the PostgreSQL tests skip with what to install or start,
# except under CI=true, where the run fails. A working server is left as it is.
. scripts/pg_setup.sh
postgres_for_tests || exit 1

# Headless Chromium for the HTML report test (Debian's `chromium`): installed when missing.
if ! command -v chromium >/dev/null 2>&1; then
    echo "scripts/test.sh: installing Debian's chromium (for tests/test_reports_browser.py)" >&2
    if ! apt_install chromium; then
        echo "scripts/test.sh: ERROR: could not install chromium with apt-get" >&2
        exit 1
    fi
fi

exec .venv/bin/python -m pytest "$@"
