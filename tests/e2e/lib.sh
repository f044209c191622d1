# Helpers shared by the end-to-end test scripts. Each script gets its own
# database in the ctest PostgreSQL fixture (PGHOST etc. are set by ctest) and
# its own temporary data directory.

set -euo pipefail

: "${DW_BUILD_DIR:?DW_BUILD_DIR must point at the build tree}"
: "${DW_SOURCE_DIR:?DW_SOURCE_DIR must point at the source tree}"
COORDINATOR="$DW_BUILD_DIR/coordinator"
WORKER="$DW_BUILD_DIR/worker"

failures=0

fail () {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# check_eq WHAT EXPECTED ACTUAL
check_eq () {
    if [ "$2" != "$3" ]; then
        fail "$1: expected '$2', got '$3'"
    fi
}

# Create a fresh database for this script and point libpq at it.
setup_database () {
    local name="dw_$1_$$"
    psql -X -q -d postgres -c "CREATE DATABASE $name" >/dev/null
    export PGDATABASE="$name"
    TEST_DATABASE="$name"
}

sql () {
    psql -X -A -t -q -d "$PGDATABASE" -c "$1"
}

setup_tmp () {
    TEST_TMP=$(mktemp -d "/tmp/dw-e2e-$1-XXXXXX")
    chmod 755 "$TEST_TMP"
}

finish () {
    if [ "$failures" -gt 0 ]; then
        echo "$failures check(s) failed; logs kept in $TEST_TMP" >&2
        exit 1
    fi
    rm -rf "$TEST_TMP"
    echo "all checks passed"
}
