#!/usr/bin/env bash
# Creates (once) the virtualenv holding Apache Airflow for
# `pgdurable verify --reference airflow`, and prints its path.
#
#   bash .ci/airflow-venv.sh [3|2] [--refreeze]
#
# 3 (the default) is Airflow 3.3.2, 2 is Airflow 2.10.5: most DAG files people
# migrate import only in Airflow 2, so verify offers both (pgdurable/verify/
# airflow_real.py picks one per DAG). Airflow never goes into the project's own
# .venv: its dependency tree (~140 packages, its own SQLAlchemy and psycopg pins)
# must not decide ours. Each venv lives at its variable (PGDURABLE_AIRFLOW_VENV,
# PGDURABLE_AIRFLOW2_VENV), default ~/.cache/pgdurable/airflow-<version>, and is
# reused while its requirements file (every package pinned: our own constraints
# file, since Airflow's published constraints are not on PyPI) is unchanged.
# `--refreeze` rebuilds it from the three top-level pins and rewrites that file.
set -euo pipefail
cd "$(dirname "$0")/.."

major=3
if [ "${1:-}" = 2 ] || [ "${1:-}" = 3 ]; then
    major=$1
    shift
fi
if [ "$major" = 3 ]; then
    version=3.3.2
    top=("apache-airflow==$version" "apache-airflow-providers-postgres==7.1.1"
         "apache-airflow-providers-common-sql==2.4.0")
    requirements=.ci/airflow-requirements.txt
    venv="${PGDURABLE_AIRFLOW_VENV:-$HOME/.cache/pgdurable/airflow-$version}"
else
    version=2.10.5
    top=("apache-airflow==$version" "apache-airflow-providers-postgres==6.0.0"
         "apache-airflow-providers-common-sql==1.23.0")
    requirements=.ci/airflow2-requirements.txt
    venv="${PGDURABLE_AIRFLOW2_VENV:-$HOME/.cache/pgdurable/airflow-$version}"
fi
stamp="$venv/.pgdurable-requirements.sha256"
wanted="$(sha256sum "$requirements" | cut -d' ' -f1)"

if [ "${1:-}" != "--refreeze" ] && [ -x "$venv/bin/airflow" ] && [ -f "$stamp" ] \
   && [ "$(cat "$stamp")" = "$wanted" ]; then
    echo "$venv"
    exit 0
fi

started=$(date +%s)
echo "creating the Airflow $version virtualenv in $venv" >&2
python3 -m venv --clear "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
if [ "${1:-}" = "--refreeze" ]; then
    "$venv/bin/python" -m pip install -q "${top[@]}" >&2
    {
        sed -n '1,4p' "$requirements"
        "$venv/bin/python" -m pip freeze
    } > "$requirements.new"
    mv "$requirements.new" "$requirements"
    wanted="$(sha256sum "$requirements" | cut -d' ' -f1)"
else
    # pip names every configured local index it skips; only its real messages matter.
    "$venv/bin/python" -m pip install -q -r "$requirements" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
fi
# A smoke test: the CLI loads (this also compiles the package's bytecode once).
"$venv/bin/airflow" version >/dev/null
echo "$wanted" > "$stamp"
echo "Airflow $version ready in $(( $(date +%s) - started )) s" >&2
echo "$venv"
