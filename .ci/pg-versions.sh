#!/usr/bin/env bash
# Runs the version-sensitive part of the suite on other PostgreSQL majors:
#
#   bash .ci/pg-versions.sh [MAJOR...]        default: 14 16 17 18
#
# The whole suite runs on the default server (Debian's 15, with pg_cron) by
# the README's command; this adds, per major version, the tests that exercise
# the server: schema, worker and reliability, plus the harness, the embedded
# cluster, the migrator and the binaries search. Each run gets its server
# through PGDURABLE_PG_BINDIR (from .ci/pg-binaries.sh) and deselects the tests
# that need pg_cron, which exists only for 15 here (`-m "not pg_cron"`: they are
# listed as deselected in the summary, never skipped).
#
# PGDURABLE_PG_JOBS (default 2) versions run at once, each in its own cluster;
# their output goes to .ci/logs/pg<MAJOR>.log and is printed when a run fails.
set -euo pipefail
cd "$(dirname "$0")/.."

subset=(
    tests/schema
    tests/worker
    tests/reliability
    tests/integration/test_harness.py
    tests/integration/test_embedded.py
    tests/integration/test_migrator.py
    tests/unit/test_binaries.py
)
# Tests that run translated sources (Airflow DAGs, psql sessions, fugit days, a
# pg_cron script) or feed translators hostile files exercise the translators,
# not the server: the DSL runtime they use is covered by the rest of
# tests/worker. So does the wait for a real minute boundary (20-50 s): the
# server's cron arithmetic it relies on is tests/schema's test_cron_next on
# every major. They run on 15 only, which keeps CI well under its 30 minutes
# (the whole run took 23.6 min on a 2-core machine before these last two).
translations=(
    --ignore-glob="tests/worker/test_airflow_*.py"
    --ignore=tests/worker/test_psql_session_runs.py
    --ignore=tests/worker/test_fugit_day_forms.py
    --ignore=tests/worker/test_pgcron_script_update.py
    --ignore=tests/reliability/test_hostile_sources.py
    --deselect=tests/worker/test_nodes.py::test_wait_for_schedule_fires_at_the_next_minute
)
# The chaos run (worker kills and server crashes) runs on 15 only: it is the
# longest test, and its crash-free reference failed one instance intermittently
# after the issue 16/17 merge (cause not yet found), so it is watched there.
chaos=tests/reliability/test_chaos.py::test_chaos_loses_nothing_and_repeats_nothing
majors=("$@")
[ "${#majors[@]}" -gt 0 ] || majors=(14 16 17 18)
jobs="${PGDURABLE_PG_JOBS:-2}"
logs=.ci/logs
mkdir -p "$logs"

# Install every server first, so a download problem stops the run before any test.
declare -A bindirs=()
for major in "${majors[@]}"; do
    bindirs[$major]="$(bash .ci/pg-binaries.sh "$major")"
done

run_one() {
    local major="$1" started=$SECONDS status=0
    PGDURABLE_PG_BINDIR="${bindirs[$major]}" .venv/bin/pytest -p no:cacheprovider -q \
        -m "not pg_cron" --deselect "$chaos" "${translations[@]}" "${subset[@]}" > "$logs/pg$major.log" 2>&1 || status=$?
    echo "PostgreSQL $major: $(tail -n 1 "$logs/pg$major.log" | tr -d '=') [$(( SECONDS - started )) s wall]"
    return "$status"
}

failed=()
declare -A running=()  # pid -> major
wait_any() {
    local pid status=0
    wait -n -p pid "${!running[@]}" || status=$?
    [ "$status" -eq 0 ] || failed+=("${running[$pid]}")
    unset "running[$pid]"
}
for major in "${majors[@]}"; do
    [ "${#running[@]}" -lt "$jobs" ] || wait_any
    run_one "$major" &
    running[$!]="$major"
done
while [ "${#running[@]}" -gt 0 ]; do wait_any; done

for major in "${failed[@]}"; do
    echo "---- PostgreSQL $major failed; its log ($logs/pg$major.log):"
    cat "$logs/pg$major.log"
done
[ "${#failed[@]}" -eq 0 ]
