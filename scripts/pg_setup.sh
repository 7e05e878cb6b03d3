# PostgreSQL for the test suite, sourced by scripts/test.sh (bash): `postgres_for_tests` makes sure
# postgresql+psycopg://postgres@127.0.0.1:5432/postgres connects, then exports ACHBATCH_TEST_PG_URL.
# - Already up and connecting: nothing is touched.
# - As root: `apt-get install postgresql` when it is not installed, a cluster created on port 5432
#   when there is none, the cluster on 5432 started when it is down, and, only when user postgres is
#   refused on 127.0.0.1, one `host all postgres 127.0.0.1/32 trust` line put first in that cluster's
#   pg_hba.conf (marked, the file backed up beside it) and the cluster reloaded.
# - Not root: says what to install or start, and exports ACHBATCH_TEST_PG_SKIP with that reason (the
#   PostgreSQL tests skip with it, tests/conftest.py), except under CI=true, where it fails.
# - ACHBATCH_TEST_PG_URL already set: that server is the caller's business; nothing is checked here.
# tests/unit/test_pg_setup.py runs these functions with stub commands on PATH.

_pg_setup_dir=${BASH_SOURCE[0]%/*}  # this file's folder (no dirname: the tests run with stub commands only)
[ "$_pg_setup_dir" = "${BASH_SOURCE[0]}" ] && _pg_setup_dir=.
. "$_pg_setup_dir/apt.sh"  # apt_install

PG_DEFAULT_URL="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_ETC=${ACHBATCH_PG_ETC:-/etc/postgresql}        # Debian's cluster configuration folders
PG_LIB=${ACHBATCH_PG_LIB:-/usr/lib/postgresql}    # Debian's server versions
PG_PYTHON=${ACHBATCH_PG_PYTHON:-.venv/bin/python} # has psycopg (the test extras)
PG_WAIT=${ACHBATCH_PG_WAIT:-30}                   # seconds to wait for a started cluster

pg_say() { echo "scripts/test.sh: $*" >&2; }

pg_up() {
    command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432
}

pg_connects() {
    "$PG_PYTHON" -c 'import psycopg; psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5").close()' \
        >/dev/null 2>&1
}

pg_wait_up() {
    local i
    for i in $(seq 1 "$PG_WAIT"); do
        pg_up && return 0
        sleep 1
    done
    pg_up
}

# "VERSION NAME" of the cluster configured on port 5432, if any (pg_lsclusters -h: ver cluster port status ...).
pg_cluster_5432() {
    command -v pg_lsclusters >/dev/null 2>&1 || return 0
    pg_lsclusters -h 2>/dev/null | while read -r ver name port _rest; do
        if [ "$port" = "5432" ]; then echo "$ver $name"; break; fi
    done
}

# Sets PG_PROBLEM and returns 1 when PostgreSQL cannot be made ready here (not root), 2 when setting
# it up as root failed; 0 when the URL connects.
ensure_postgres() {
    PG_PROBLEM=""
    if pg_up && pg_connects; then
        return 0
    fi
    if [ "$(id -u)" != "0" ]; then
        if pg_up; then
            PG_PROBLEM="PostgreSQL on 127.0.0.1:5432 refuses user postgres; as root add 'host all postgres 127.0.0.1/32 trust' first in its pg_hba.conf and reload it (or run scripts/test.sh as root)"
        elif ! command -v pg_ctlcluster >/dev/null 2>&1; then
            PG_PROBLEM="PostgreSQL is not installed; as root: apt-get install postgresql (or run scripts/test.sh as root)"
        else
            PG_PROBLEM="PostgreSQL is not running on 127.0.0.1:5432; as root: pg_ctlcluster VERSION main start (or run scripts/test.sh as root)"
        fi
        return 1
    fi
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
        pg_say "installing postgresql (needed by the PostgreSQL tests)"
        if ! apt_install postgresql; then
            PG_PROBLEM="apt-get install postgresql failed"
            return 2
        fi
    fi
    local cluster ver name
    cluster=$(pg_cluster_5432)
    if [ -z "$cluster" ]; then
        ver=$(ls "$PG_LIB" 2>/dev/null | sort -V | tail -n 1 || true)
        if [ -z "$ver" ]; then
            PG_PROBLEM="no PostgreSQL server version under $PG_LIB"
            return 2
        fi
        pg_say "creating PostgreSQL cluster $ver/main on port 5432"
        if ! pg_createcluster -p 5432 "$ver" main >/dev/null; then
            PG_PROBLEM="pg_createcluster -p 5432 $ver main failed"
            return 2
        fi
        cluster="$ver main"
    fi
    read -r ver name <<<"$cluster"
    if ! pg_up; then
        pg_say "starting PostgreSQL cluster $ver/$name"
        pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start || true
        if ! pg_wait_up; then
            PG_PROBLEM="PostgreSQL cluster $ver/$name does not accept connections on 127.0.0.1:5432 after start"
            return 2
        fi
    fi
    if ! pg_connects; then
        local hba="$PG_ETC/$ver/$name/pg_hba.conf"
        if [ ! -f "$hba" ]; then
            PG_PROBLEM="user postgres is refused on 127.0.0.1:5432 and $hba is missing"
            return 2
        fi
        pg_say "letting user postgres in from 127.0.0.1 without a password ($hba, backup in $hba.achbatch-backup)"
        cp -p "$hba" "$hba.achbatch-backup"
        { echo "host all postgres 127.0.0.1/32 trust  # added by achbatch scripts/test.sh"; cat "$hba.achbatch-backup"; } >"$hba"
        pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" reload || true
        pg_wait_up || true
        if ! pg_connects; then
            PG_PROBLEM="user postgres is still refused on 127.0.0.1:5432 after trusting it in $hba"
            return 2
        fi
    fi
    return 0
}

# What scripts/test.sh runs: returns non-zero (after saying why) when the run must stop.
postgres_for_tests() {
    if [ -n "${ACHBATCH_TEST_PG_URL:-}" ]; then
        return 0
    fi
    local rc=0
    ensure_postgres || rc=$?
    if [ "$rc" = 0 ]; then
        export ACHBATCH_TEST_PG_URL="$PG_DEFAULT_URL"
        unset ACHBATCH_TEST_PG_SKIP
        return 0
    fi
    if [ "$rc" = 2 ]; then
        pg_say "ERROR: $PG_PROBLEM"
        return 1
    fi
    if [ "${CI:-}" = "true" ]; then
        pg_say "ERROR: $PG_PROBLEM; CI needs PostgreSQL"
        return 1
    fi
    pg_say "$PG_PROBLEM; the PostgreSQL tests are skipped"
    export ACHBATCH_TEST_PG_SKIP="$PG_PROBLEM"
    return 0
}
