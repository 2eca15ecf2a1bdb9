"""Airflow templates rendered at run time, on the worker (SPEC A.4 code steps).

A bash command whose Jinja cannot become SQL references (``{{ task_instance_key_str }}``,
``{% for %}``, ``{{ macros.ds_add(ds, 7) }}``, ``{{ dag_run.conf.get('x') }}``...)
is rendered when the task runs, as Airflow renders it: by a Python step of the
DAG's task module (``translators/airflow/runtime_templates.py`` writes it) whose
row holds the rendered text, read by the command step that follows
(``bash -c $r.command``). The template itself lives in the reviewed task module,
never in the database, so the worker's ``$``/``{}`` substitution never touches it.

The environment is Airflow's (``DAG.get_template_env``): ``jinja2.ext.do``, no
cache, ``StrictUndefined`` from Airflow 2 (``Undefined``, an empty string, in
1.10), Airflow's filters (``ds``, ``ds_nodash``, ``ts``, ``ts_nodash``,
``ts_nodash_with_tz``), and a sandbox that, as Airflow's, refuses only internal
attributes (``__class__``, ``func_globals``...), not every ``_name``. Ours is
built on jinja2's ``ImmutableSandboxedEnvironment``: Airflow's sandbox also lets
a template change a list or dict in place (``{% do x.append(1) %}``); here that
raises, which the translation reports (PGD285). Airflow 1.10 has no sandbox at
all. The context is ``airflow_context``'s, the one Python tasks get.

Imported only inside the code step's child process; jinja2 is a declared
dependency of pgdurable, so the worker's interpreter has it.
"""

from __future__ import annotations

from typing import Any

from pgdurable import airflow_context


def _filters() -> dict[str, Any]:
    def ds(value: Any) -> Any:
        return None if value is None else value.strftime("%Y-%m-%d")

    def ds_nodash(value: Any) -> Any:
        return None if value is None else value.strftime("%Y%m%d")

    def ts(value: Any) -> Any:
        return None if value is None else value.isoformat()

    def ts_nodash(value: Any) -> Any:
        return None if value is None else value.strftime("%Y%m%dT%H%M%S")

    def ts_nodash_with_tz(value: Any) -> Any:
        return None if value is None else value.isoformat().replace("-", "").replace(":", "")

    return {
        "ds": ds,
        "ds_nodash": ds_nodash,
        "ts": ts,
        "ts_nodash": ts_nodash,
        "ts_nodash_with_tz": ts_nodash_with_tz,
    }


AIRFLOW_FILTERS = frozenset(_filters())


def environment(generation: int) -> Any:
    """The Jinja environment of an Airflow ``generation`` DAG (sandboxed)."""
    import jinja2
    from jinja2.sandbox import (
        ImmutableSandboxedEnvironment,
        is_internal_attribute,
        modifies_known_mutable,
    )

    class Sandbox(ImmutableSandboxedEnvironment):
        def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
            # Airflow's rule (airflow/templates.py): `_x` is allowed, internals are not;
            # and, immutable, no in-place change of a list, dict or set
            return not is_internal_attribute(obj, attr) and not modifies_known_mutable(obj, attr)

    env = Sandbox(
        undefined=jinja2.Undefined if generation < 2 else jinja2.StrictUndefined,
        extensions=["jinja2.ext.do"],
        cache_size=0,
    )
    env.filters.update(_filters())
    return env


def render(template: str, payload: dict[str, Any]) -> str:
    """``template`` rendered with the Airflow context of ``payload`` (a Python step's)."""
    state = airflow_context._Run(payload)
    token = airflow_context._current.set(state)
    try:
        env = environment(int(payload.get("generation", 2)))
        return env.from_string(template).render(**state.context())
    finally:
        airflow_context._current.reset(token)


def command(template: str, env: dict[str, str], payload: dict[str, Any]) -> dict[str, Any]:
    """The row of a bash task's render step: the command and its ``env`` values, rendered.
    Env values are ``e0``, ``e1``... in the order of ``env`` (result columns must be
    identifiers, env names need not be)."""
    row: dict[str, Any] = {"command": render(template, payload)}
    for i, value in enumerate(env.values()):
        row[f"e{i}"] = render(value, payload)
    return {"rows": [row]}


def decorated(function: Any, env: dict[str, str], payload: dict[str, Any]) -> dict[str, Any]:
    """``@task.bash``: the callable returns the command, which Airflow then renders as a
    template; a non-string or blank return fails the task (Airflow's TypeError)."""
    value = airflow_context.run(function, payload)["rows"][0]["return_value"]
    if not isinstance(value, str) or not value.strip():
        raise TypeError("The returned value from the TaskFlow callable must be a non-empty string.")
    return command(value, env, payload)
