"""``pgdurable verify``: replay the old job and the new workflow side by side on
fixture databases and show whether they leave the same data.

Modules, one concept each:
- ``sandbox``: the fixture template and its per-side clones (always dropped);
- ``subjects``: the source item and its generated file (the translators' readers);
- ``pgcron``, ``queue``: the old side of a pg_cron job / queue job;
- ``airflow_builtin``: pgdurable's independent reference executor of a DAG run;
- ``airflow_real``: the same run by a real Apache Airflow (``--reference airflow``);
- ``newside``: apply the generated file, run one tick per logical date on the worker;
- ``chaos``: the worker (and PostgreSQL) killed at random points during the run;
- ``compare``: row multisets of user tables, minus volatile columns;
- ``report``: the verdict as text and JSON;
- ``runner``: one verification end to end, and the ``--all`` batch.
"""

from __future__ import annotations

from pgdurable.verify.runner import Options, verify, verify_all

__all__ = ["Options", "verify", "verify_all"]
