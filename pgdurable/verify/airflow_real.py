"""``--reference airflow``: run the DAG with a real Apache Airflow and read the task states.

Two generations are offered, each pinned in its own virtualenv, never in
pgdurable's: Airflow 3 (``$PGDURABLE_AIRFLOW_VENV``, default
``~/.cache/pgdurable/airflow-3.3.2``) and Airflow 2 (``$PGDURABLE_AIRFLOW2_VENV``,
default ``~/.cache/pgdurable/airflow-2.10.5``), both made by
``.ci/airflow-venv.sh [3|2]``. Which one runs a DAG: ``--airflow-version``, else
the generation the DAG's imports show (``airflow.sdk`` is 3; Airflow 1/2 spellings
are 2; a DAG that shows neither is run by 3). Most DAG files people migrate
import only in Airflow 2. One run is ``airflow dags test DAG_ID DATE -f FILE``
(Airflow 2: ``-S FILE``):
the DAG file is parsed and executed in-process by Airflow itself, with

- every connection id the DAG names passed by environment
  (``AIRFLOW_CONN_<ID>`` = the old side's clone, as the role the run uses);
- metadata in a throwaway ``AIRFLOW_HOME`` with SQLite, copied from a
  migrated database kept in the venv folder (``airflow db migrate`` costs
  seconds; it runs once per venv, under a lock);
- task states read back from that SQLite database afterwards.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
import subprocess
import tempfile
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from pgdurable import db
from pgdurable.errors import VerificationError
from pgdurable.verify.airflow_builtin import DagRunOutcome

# major version -> the pinned release (.ci/airflow-venv.sh pins the same) and its venv variable
VERSIONS = {"3": "3.3.2", "2": "2.10.5"}
VENV_VARIABLES = {"3": "PGDURABLE_AIRFLOW_VENV", "2": "PGDURABLE_AIRFLOW2_VENV"}
AIRFLOW_VERSION = VERSIONS["3"]
RUN_TIMEOUT_SECONDS = 600


def major_for(requested: str | None, generation: int | None) -> str:
    """The Airflow major version that runs a DAG: the one asked for, else the DAG's
    generation (its imports), else 3."""
    if requested is not None:
        major = requested.split(".", 1)[0]
        if major not in VERSIONS:
            raise VerificationError(
                f"--airflow-version {requested}: pgdurable offers Apache Airflow "
                + " and ".join(f"{v} ({k})" for k, v in sorted(VERSIONS.items()))
            )
        return major
    return "2" if generation is not None and generation <= 2 else "3"


def venv_path(major: str = "3") -> Path:
    configured = os.environ.get(VENV_VARIABLES[major])
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "pgdurable" / f"airflow-{VERSIONS[major]}"


def _program(venv: Path, major: str = "3") -> Path:
    program = venv / "bin" / "airflow"
    if not program.is_file():
        raise VerificationError(
            f"Apache Airflow {VERSIONS[major]} was not found in {venv}: run "
            f"`bash .ci/airflow-venv.sh {major}` (it creates that virtualenv) or set "
            f"{VENV_VARIABLES[major]} to a virtualenv with apache-airflow {major}, "
            "apache-airflow-providers-postgres and apache-airflow-providers-common-sql"
        )
    return program


def airflow_env(home: Path) -> dict[str, str]:
    """The environment Airflow runs in: its home and settings, none of ours (PG*, a venv)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PG", "AIRFLOW", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        }
    )
    return env


def _metadata_template(venv: Path, program: Path) -> Path:
    """A migrated SQLite metadata database, made once per venv."""
    folder = venv / "pgdurable-metadata"
    folder.mkdir(exist_ok=True)
    ready = folder / "airflow.db.ready"
    with open(folder / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ready.exists():
            result = subprocess.run(
                [str(program), "db", "migrate"],
                env=airflow_env(folder),
                capture_output=True,
                text=True,
                check=False,
                timeout=RUN_TIMEOUT_SECONDS,
            )
            if result.returncode != 0:
                raise VerificationError(
                    f"`airflow db migrate` failed in {folder}: {result.stderr.strip()[-2000:]}"
                )
            ready.write_text("ok\n")
    return folder / "airflow.db"


def connection_uri(conninfo: str) -> str:
    """An Airflow connection URI for a libpq conninfo (Unix-socket hosts percent-encoded)."""
    p = db.conninfo_params(conninfo)
    user = quote(p.get("user", ""), safe="")
    password = f":{quote(p['password'], safe='')}" if p.get("password") else ""
    host = quote(p.get("host", ""), safe="")
    return f"postgresql://{user}{password}@{host}:{p.get('port', '5432')}/{quote(p['dbname'])}"


def run_dag(
    dag_file: Path,
    dag_id: str,
    logical: datetime,
    connections: dict[str, str],
    major: str = "3",
) -> DagRunOutcome:
    """One real Airflow DAG run; ``connections`` maps conn_id -> libpq conninfo."""
    venv = venv_path(major)
    program = _program(venv, major)
    template = _metadata_template(venv, program)
    with tempfile.TemporaryDirectory(prefix="pgdurable-airflow-") as folder:
        home = Path(folder)
        shutil.copy(template, home / "airflow.db")
        env = airflow_env(home)
        env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dag_file.parent.resolve())
        for conn_id, conninfo in connections.items():
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = connection_uri(conninfo)
        command = [str(program), "dags", "test", dag_id, logical.isoformat()]
        # Airflow 3 names the file with -f (--dagfile-path), Airflow 2 with -S (--subdir)
        command += ["-f" if major == "3" else "-S", str(dag_file.resolve())]
        try:
            result = subprocess.run(
                command,
                env=env,
                cwd=folder,
                capture_output=True,
                text=True,
                check=False,
                timeout=RUN_TIMEOUT_SECONDS,
            )
        except subprocess.TimeoutExpired as exc:
            raise VerificationError(
                f"`airflow dags test {dag_id}` did not finish in {RUN_TIMEOUT_SECONDS} s"
            ) from exc
        with sqlite3.connect(home / "airflow.db") as meta:
            runs = meta.execute("SELECT state FROM dag_run WHERE dag_id = ?", [dag_id]).fetchall()
            rows = meta.execute(
                "SELECT task_id, state FROM task_instance WHERE dag_id = ?", [dag_id]
            ).fetchall()
        meta.close()
    if not runs:
        tail = (result.stdout + result.stderr).strip()[-3000:]
        raise VerificationError(
            f"Airflow did not run DAG {dag_id!r} from {dag_file} "
            f"(exit {result.returncode}):\n{tail}"
        )
    states = {task_id: state or "none" for task_id, state in rows}
    output = result.stdout + result.stderr
    errors = {
        t: _error_of(output, t)
        for t, state in states.items()
        if state in ("failed", "up_for_retry")
    }
    return DagRunOutcome(states, runs[0][0] or "none", errors)


def _error_of(output: str, task_id: str) -> str:
    """The last error line Airflow logged that names the task, for the report."""
    lines = [line.strip() for line in output.splitlines()]
    mine = [line for line in lines if task_id in line and ("Error" in line or "ERROR" in line)]
    return (mine[-1] if mine else "failed (see the `airflow dags test` output)")[-500:]
