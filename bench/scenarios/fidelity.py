"""Scenario 9: how much of Airflow's own example DAGs translates, per Airflow version.

The Airflow wheels on PyPI ship their example DAGs: ``airflow/example_dags/``
of ``apache-airflow`` 1.10.15 and 2.10.5, and of ``apache-airflow-core``
3.3.2 plus ``apache-airflow-providers-standard``'s ``example_dags/``. The
scenario downloads those wheels once (``pip download --no-deps`` into
``~/.cache/pgdurable/fidelity/wheels``; never committed), extracts the
example folders next to them, translates each version's folder with a role
and a connection map (``pipeline.import_airflow``, exactly what
``pgdurable import-airflow`` does) and counts exact / approximate / manual /
failed DAGs, with the diagnostic codes that keep DAGs manual, most frequent
first. The files are read, never imported or run.

``PGDURABLE_FIDELITY_DAGS=DIR`` uses ``DIR/<version>/`` folders instead (no
download): the test suite runs the scenario that way on a few local files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.context import Context
from bench.report import Section
from pgdurable import pipeline

KEY = "fidelity"
TARGET = 0.70  # share of DAGs exact or approximate (issue 19)
ROLE = "etl"
# Example DAGs name these connections; the map says they are the migrated database.
CONNECTIONS = """\
postgres_default: current
postgres_conn: current
airflow_db: current
tutorial_pg_conn: current
"""
CACHE = Path.home() / ".cache" / "pgdurable" / "fidelity"
LOCAL = "PGDURABLE_FIDELITY_DAGS"
DOWNLOAD_TIMEOUT_S = 600


@dataclass(frozen=True)
class Release:
    """One Airflow version: the wheels to download and their example folders."""

    label: str
    requirements: tuple[str, ...]
    folders: tuple[str, ...]


RELEASES = (
    Release("1.10.15", ("apache-airflow==1.10.15",), ("airflow/example_dags/",)),
    Release("2.10.5", ("apache-airflow==2.10.5",), ("airflow/example_dags/",)),
    Release(
        "3.3.2",
        ("apache-airflow-core==3.3.2", "apache-airflow-providers-standard==1.21.0"),
        ("airflow/example_dags/", "airflow/providers/standard/example_dags/"),
    ),
)


def _wheel(requirement: str, wheels: Path) -> Path:
    """The wheel of ``name==version`` in ``wheels``, downloaded when missing."""
    name, version = requirement.split("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    found = sorted(wheels.glob(pattern))
    if not found:
        wheels.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "-q",
                "-d",
                str(wheels),
                requirement,
            ],
            capture_output=True,
            text=True,
            timeout=DOWNLOAD_TIMEOUT_S,
            check=False,
        )
        found = sorted(wheels.glob(pattern))
        if done.returncode != 0 or not found:
            raise RuntimeError(f"pip download {requirement} failed: {done.stderr.strip()[-500:]}")
    return found[0]


def _extract(release: Release, cache: Path) -> Path:
    """The release's example folders, extracted once under ``cache/dags/<label>``."""
    target = cache / "dags" / release.label
    stamp = target / ".complete"
    if stamp.is_file():
        return target
    for requirement in release.requirements:
        with zipfile.ZipFile(_wheel(requirement, cache / "wheels")) as wheel:
            for member in wheel.namelist():
                if not any(member.startswith(f) for f in release.folders) or member.endswith("/"):
                    continue
                path = (target / member).resolve()
                if not path.is_relative_to(target.resolve()):  # a wheel is outside input
                    raise RuntimeError(f"{requirement}: member {member!r} leaves the folder")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(wheel.read(member))
    stamp.write_text("")
    return target


def folders() -> list[tuple[str, Path]]:
    """(version, folder of its example DAGs), downloading what is missing."""
    local = os.environ.get(LOCAL)
    if local:
        root = Path(local)
        return [(p.name, p) for p in sorted(root.iterdir()) if p.is_dir()]
    return [(r.label, _extract(r, CACHE)) for r in RELEASES]


def measure(folder: Path, scratch: Path) -> dict:
    """Fidelity counts and the causes of manual DAGs for one folder."""
    connections = scratch / "connections.yaml"
    connections.write_text(CONNECTIONS)
    out = Path(tempfile.mkdtemp(dir=scratch, prefix="out-"))
    report = pipeline.import_airflow(
        paths=[folder], out_dir=out, connections_file=connections, default_username=ROLE
    )
    items = report.as_dict()["items"]
    counts = Counter(item["fidelity"] for item in items)
    causes: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for item in items:
        if item["fidelity"] not in ("manual", "failed"):
            continue
        seen = set()
        for diagnostic in item["diagnostics"]:
            code = diagnostic["code"]
            if diagnostic["severity"] == "info" or code in seen:
                continue
            # only the codes that make an item manual or failed are its causes
            if code[3] not in "13":
                continue
            seen.add(code)
            causes[code] += 1
            examples.setdefault(code, f"{item['name']}: {diagnostic['message']}")
    return {
        "dags": len(items),
        **{k: counts.get(k, 0) for k in ("exact", "approximate", "manual", "failed")},
        "causes": dict(causes.most_common()),
        "examples": examples,
    }


def _share(row: dict) -> float:
    return (row["exact"] + row["approximate"]) / row["dags"] if row["dags"] else 0.0


def run(ctx: Context) -> Section:
    ctx.progress("fidelity: Airflow's example DAGs (downloading the wheels once)")
    measured: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="pgdurable-bench-fidelity-") as tmp:
        for label, folder in folders():
            ctx.progress(f"fidelity: translating Airflow {label} examples")
            measured[label] = measure(folder, Path(tmp))
    section = Section(
        KEY,
        "9. Fidelity on Airflow's own example DAGs",
        "The example DAGs shipped in the Airflow wheels on PyPI (1.10.15 and 2.10.5: "
        "`airflow/example_dags/`; 3.3.2: `apache-airflow-core`'s `airflow/example_dags/` and "
        "`apache-airflow-providers-standard` 1.21.0's `example_dags/`), downloaded with "
        "`pip download --no-deps` into `~/.cache/pgdurable/fidelity` and translated by "
        f"`pgdurable import-airflow --default-username {ROLE} --connections MAP` (the map "
        "sends the examples' Postgres connections to the current database). A DAG counts "
        "once, at the fidelity of its worst step.",
        ["Airflow", "DAGs", "exact", "approximate", "manual", "failed", "exact or approximate"],
    )
    total = Counter()
    causes: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for label, row in measured.items():
        section.rows.append(
            [
                label,
                str(row["dags"]),
                *(str(row[k]) for k in ("exact", "approximate", "manual", "failed")),
                f"{_share(row):.0%}",
            ]
        )
        for key in ("dags", "exact", "approximate", "manual", "failed"):
            total[key] += row[key]
        causes.update(row["causes"])
        for code, example in row["examples"].items():
            examples.setdefault(code, f"{label} {example}")
    overall = _share(dict(total))
    section.rows.append(
        [
            "all",
            str(total["dags"]),
            *(str(total[k]) for k in ("exact", "approximate", "manual", "failed")),
            f"{overall:.0%}",
        ]
    )
    if causes:
        section.notes.append(
            "Top causes of manual/failed DAGs (DAGs per diagnostic code; one DAG can have "
            "several): "
            + "; ".join(
                f"{code} ×{n} (e.g. {examples[code][:160]})" for code, n in causes.most_common(8)
            )
        )
    section.target(
        f"≥ {TARGET:.0%} of the example DAGs exact or approximate",
        f"{overall:.0%} ({total['exact'] + total['approximate']} of {total['dags']})",
        overall >= TARGET,
    )
    section.data = {"versions": measured, "total": dict(total), "share": overall}
    return section
