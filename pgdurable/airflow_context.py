"""The Airflow-shaped context a translated Python task runs with (SPEC A.4 code steps).

The task modules that ``pgdurable import-airflow`` writes (``airflow_tasks/<dag>.py``)
import the Airflow names their callables use from here instead of from Airflow, and
each task's entry function calls ``run(callable, payload)``. The payload is the
Python step's kwargs, after the worker's raw substitution: the run's dates
(``dag_run``, the ``$dag_run.*`` row), static ``params``, ``op_args``/``op_kwargs``
and ``templates_dict`` (Jinja rendered), the rows of upstream Python tasks
(``xcom``), the df vars ``Variable.get`` reads (``variables``) and, for branch
and short-circuit tasks, what decides the downstream tasks.

``run`` calls the function the way Airflow's PythonOperator does (context keys
matched to parameter names, all of them with ``**kwargs``), and returns the
task's row ``{"rows": [{"return_value": v, "xcom": {...}}]}``: SQL reads
``$r_task`` as the return value (the first cell, quoted as SQL), Python steps
read the whole row (``$r_task.*``), so a returned value is never confused with
a row set. Branch rows add ``follow`` (the task ids to run), short-circuit rows
``follow`` (the truth of the value).

Only the standard library is imported, so this runs in the code step's child
process with the worker's interpreter.
"""

from __future__ import annotations

import contextvars
import inspect
import json
import os
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

_UNSET = object()
_current: contextvars.ContextVar[_Run] = contextvars.ContextVar("pgdurable_airflow_run")


class AirflowException(Exception):
    """Airflow's base exception: raising it fails the step (and retries apply)."""


class AirflowFailException(AirflowException):
    """Fails the task; the translation reports that retries still apply here."""


class AirflowSkipException(AirflowException):
    """Airflow skips the task; here the step fails (the translation says so, PGD245)."""


class PokeReturnValue:
    """``airflow.sensors.base.PokeReturnValue``: a sensor callable's answer, true when
    ``is_done``; its ``xcom_value`` is the task's result."""

    def __init__(self, is_done: bool, xcom_value: Any | None = None) -> None:
        self.is_done = is_done
        self.xcom_value = xcom_value

    def __bool__(self) -> bool:
        return bool(self.is_done)


def _stamp(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    return datetime.fromisoformat(text)


def _json(text: Any) -> Any:
    """A raw ``$name.*`` substitution: JSON rows, or the reference left as written
    (the task did not run in this instance)."""
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


class _Obj:
    """An attribute bag (``dag_run.run_id``, ``dag.dag_id``, ``task.task_id``)."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def __repr__(self) -> str:
        return f"<{', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())}>"


class TaskInstance:
    """``ti`` / ``task_instance``: the XCom calls of the running task."""

    def __init__(self, run: _Run) -> None:
        self._run = run
        self.dag_id = run.payload.get("dag_id")
        self.task_id = run.payload.get("task_id")
        self.run_id = run.dag_run.get("run_id")
        self.try_number = 1
        self.map_index = -1

    def xcom_push(self, key: str, value: Any, **_: Any) -> None:
        json.dumps(value)  # Airflow's JSON XCom backend refuses the same values
        self._run.pushed[str(key)] = value

    def xcom_pull(
        self,
        task_ids: str | Iterable[str] | None = None,
        dag_id: str | None = None,
        key: str = "return_value",
        **_: Any,
    ) -> Any:
        if task_ids is None:
            raise AirflowException(
                "xcom_pull without task_ids is not translated: name the task (task_ids='...')"
            )
        if isinstance(task_ids, str):
            return self._run.xcom(task_ids, key)
        return [self._run.xcom(t, key) for t in task_ids]


class _Run:
    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = payload
        rows = _json(payload.get("dag_run"))
        self.dag_run: dict[str, Any] = rows[0] if isinstance(rows, list) and rows else {}
        self.pushed: dict[str, Any] = {}
        self.outlet_events = OutletEvents()

    def xcom(self, task_id: str, key: str) -> Any:
        rows = _json((self.payload.get("xcom") or {}).get(task_id))
        if not isinstance(rows, list) or not rows or not isinstance(rows[0], dict):
            return None  # Airflow: None when the task did not push (did not run)
        row = rows[0]
        if key == "return_value":
            return row.get("return_value")
        return (row.get("xcom") or {}).get(key)

    def context(self) -> dict[str, Any]:
        run = self.dag_run
        logical = _stamp(run.get("ts"))
        ti = TaskInstance(self)
        context: dict[str, Any] = {
            "ds": run.get("ds"),
            "ds_nodash": run.get("ds_nodash"),
            "ts": run.get("ts"),
            "ts_nodash": run.get("ts_nodash"),
            "logical_date": logical,
            "data_interval_start": _stamp(run.get("data_interval_start")),
            "data_interval_end": _stamp(run.get("data_interval_end")),
            "run_id": run.get("run_id"),
            "params": dict(self.payload.get("params") or {}),
            "ti": ti,
            "task_instance": ti,
            "dag": _Obj(dag_id=self.payload.get("dag_id")),
            "task": _Obj(task_id=self.payload.get("task_id")),
            "dag_run": _Obj(run_id=run.get("run_id"), logical_date=logical),
            "templates_dict": self.payload.get("templates_dict"),
            # a scheduled or triggered run is not `airflow tasks test`
            "test_mode": False,
            "task_instance_key_str": (
                f"{self.payload.get('dag_id')}__{self.payload.get('task_id')}__"
                f"{run.get('ds_nodash')}"
            ),
            "outlet_events": self.outlet_events,
        }
        _template_names(context, self)
        if self.payload.get("generation", 2) < 3:
            context.update(
                execution_date=logical,
                next_ds=run.get("next_ds"),
                prev_ds=run.get("prev_ds"),
                yesterday_ds=run.get("yesterday_ds"),
                tomorrow_ds=run.get("tomorrow_ds"),
            )
        return context

    def argument(self, value: Any) -> Any:
        """An op_args/op_kwargs value: an upstream task's result where TaskFlow passed one."""
        if isinstance(value, dict) and set(value) == {"__xcom__"}:
            return self.xcom(value["__xcom__"], "return_value")
        if isinstance(value, list):
            return [self.argument(v) for v in value]
        if isinstance(value, dict):
            return {k: self.argument(v) for k, v in value.items()}
        return value


def _template_names(context: dict[str, Any], state: _Run) -> None:
    """What Airflow's context adds for templates: ``task_instance_key_str``, ``macros``,
    ``var``, ``conn``, the run's ``conf`` (``dag_run.conf``, and over ``params`` where
    Airflow's ``dag_run_conf_overrides_params`` is on: from 2.0, its default)."""
    from pgdurable import airflow_macros

    run = state.dag_run
    conf = _json(run.get("conf")) if isinstance(run.get("conf"), str) else run.get("conf")
    conf = conf if isinstance(conf, dict) else {}
    generation = state.payload.get("generation", 2)
    dag_run = context["dag_run"]
    dag_run.conf = conf
    dag_run.dag_id = state.payload.get("dag_id")
    dag_run.data_interval_start = context["data_interval_start"]
    dag_run.data_interval_end = context["data_interval_end"]
    if generation < 3:
        dag_run.execution_date = context["logical_date"]
    if generation >= 2 and conf:
        context["params"].update(conf)
    context["task_instance_key_str"] = (
        f"{state.payload.get('dag_id')}__{state.payload.get('task_id')}__{run.get('ds_nodash')}"
    )
    context["macros"] = airflow_macros.namespace()
    context["var"] = {"value": _VariableAccessor(False), "json": _VariableAccessor(True)}
    context["conn"] = _ConnectionAccessor()


class _VariableAccessor:
    """``var.value.X`` / ``var.json.X`` (and ``.get(X, default)``) in a template."""

    def __init__(self, deserialize_json: bool) -> None:
        self._json = deserialize_json

    def __getattr__(self, key: str) -> Any:
        return Variable.get(key, deserialize_json=self._json)

    def get(self, key: str, default_var: Any = _UNSET) -> Any:
        return Variable.get(key, default_var, deserialize_json=self._json)


class _ConnectionAccessor:
    """``conn.X`` in a template: the connection the translation mapped X to."""

    def __getattr__(self, conn_id: str) -> Connection:
        return _connection(conn_id)

    def get(self, conn_id: str, default_conn: Any = None) -> Any:
        try:
            return _connection(conn_id)
        except AirflowException:
            return default_conn


def _keywords(function: Callable[..., Any], args: list[Any], merged: dict[str, Any]) -> dict:
    """Airflow's rule: with ``**kwargs`` every context key, else only the named ones;
    a positional argument may not also be a context key."""
    signature = inspect.signature(function)
    names = list(signature.parameters)
    for name in names[: len(args)]:
        if name in merged:
            raise ValueError(f"The key {name} in args is a part of kwargs and therefore reserved.")
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        return merged
    return {name: merged[name] for name in names if name in merged}


def run(function: Callable[..., Any], payload: dict[str, Any]) -> dict[str, Any]:
    """Call ``function`` as Airflow would and return the task's row."""
    state = _Run(payload)
    token = _current.set(state)
    try:
        args = [state.argument(v) for v in payload.get("op_args") or []]
        merged = state.context()
        allowed = payload.get("context_keys")
        if allowed is not None:
            # a virtualenv / external Python task: Airflow passes only its serializable
            # context keys (no ti), templates_dict as an op_kwarg
            keep = set(allowed) | ({"templates_dict"} if payload.get("templates_dict") else set())
            merged = {k: v for k, v in merged.items() if k in keep}
        merged.update({k: state.argument(v) for k, v in (payload.get("op_kwargs") or {}).items()})
        if "provide_context" in payload:  # Airflow 1.x: all of the context, or none of it
            own = {k: state.argument(v) for k, v in (payload.get("op_kwargs") or {}).items()}
            keywords = merged if payload["provide_context"] else own
            try:
                value, skipped = function(*args, **keywords), False
            except AirflowSkipException:
                if not payload.get("skippable"):
                    raise
                value, skipped = None, True
            return _row(value, state, payload, skipped)
        mapping = merged.pop(MAP_KEY, None)
        skipped = False
        if mapping is None and inspect.isgeneratorfunction(function):
            value = _exhaust(function(*args, **_keywords(function, args, merged)), state)
        elif mapping is None and payload.get("skippable"):
            try:
                value = function(*args, **_keywords(function, args, merged))
            except AirflowSkipException:
                value, skipped = None, True  # Airflow: the task ends skipped, no XCom
        elif mapping is None:
            value = function(*args, **_keywords(function, args, merged))
        else:
            value = []
            for index, instance in enumerate(_instances(payload.get("map_how"), mapping)):
                if isinstance(merged.get("ti"), TaskInstance):
                    merged["ti"].map_index = index
                keywords = {**merged, **instance}
                if payload.get("map_target") == "operator":  # constructor arguments
                    own = {**(merged.get(OPERATOR_KEY) or {}), **instance}
                    keywords = {**merged, OPERATOR_KEY: own}
                value.append(function(*args, **_keywords(function, args, keywords)))
    finally:
        _current.reset(token)
    return _row(value, state, payload, skipped)


def _row(value: Any, state: _Run, payload: dict[str, Any], skipped: bool) -> dict[str, Any]:
    """The task's row from the callable's return value (checked as Airflow's JSON XCom)."""
    done = None
    if payload.get("mode") == "sensor":
        # a poke: Airflow's sensor tests the value's truth (PokeReturnValue: is_done),
        # and only a PokeReturnValue's xcom_value becomes the task's XCom
        done = bool(value)
        value = value.xcom_value if isinstance(value, PokeReturnValue) and done else None
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"task {payload.get('task_id')} returned a value of type {type(value).__name__}, "
            f"which is not JSON (Airflow's XCom would refuse it too): {exc}"
        ) from None
    row: dict[str, Any] = {"return_value": value, "xcom": state.pushed}
    if state.outlet_events.extras():
        # kept with the task's result: no asset event carries them to consumers here
        row["outlet_events"] = state.outlet_events.extras()
    if payload.get("skippable"):
        row["skipped"] = skipped
        if skipped:
            row["xcom"] = {}
    mode = payload.get("mode")
    if mode == "branch":
        row["follow"] = _branch(value, payload.get("downstream") or [])
    elif mode == "short_circuit":
        row["follow"] = bool(value)
    elif mode == "sensor":
        row["follow"] = done
    return {"rows": [row]}


MAP_KEY = "__pgdurable_map__"  # translators/airflow/python_mapped.py


def _instances(how: Any, mapping: Any) -> list[dict[str, Any]]:
    """The keyword arguments of each mapped instance, in Airflow's map-index order:
    ``expand`` takes the cross product of its keyword lists (the last varies
    fastest), ``expand_kwargs`` one dict per element."""
    import itertools

    if how == "expand_kwargs":
        if not isinstance(mapping, list) or not all(isinstance(m, dict) for m in mapping):
            raise ValueError(f"expand_kwargs() expects a list of dicts, got {mapping!r}")
        return [dict(m) for m in mapping]
    if not isinstance(mapping, dict):
        raise ValueError(f"expand() got {mapping!r}")
    keys = list(mapping)
    for key in keys:
        if not isinstance(mapping[key], list):
            raise ValueError(
                f"expand() argument {key!r} must be a list, got {type(mapping[key]).__name__}"
            )
    combos = itertools.product(*(mapping[k] for k in keys))
    return [dict(zip(keys, combo, strict=True)) for combo in combos]


def _branch(value: Any, downstream: list[str]) -> list[str]:
    """The task ids a branch callable chose, checked as Airflow checks them."""
    if value is None:
        return []
    chosen = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(t, str) for t in chosen):
        raise AirflowException(f"Branch callable must return task ids (strings), got {value!r}")
    invalid = sorted(set(chosen) - set(downstream))
    if invalid:
        raise AirflowException(
            f"'branch_task_ids' must contain only valid task_ids. Invalid tasks found: {invalid}."
        )
    return chosen


class Dataset:
    """``Dataset(uri)`` / ``Asset(name=..., uri=...)``: an identity for outlet events."""

    def __init__(
        self, uri: str | None = None, extra: dict | None = None, *, name: str | None = None,
        group: str | None = None, **_: Any,
    ) -> None:  # fmt: skip
        self.uri = uri if uri is not None else name
        self.name = name if name is not None else uri
        self.group = group
        self.extra = dict(extra or {})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dataset) and (self.uri, self.name) == (other.uri, other.name)

    def __hash__(self) -> int:
        return hash((self.uri, self.name))

    def __repr__(self) -> str:
        return f"Dataset({self.uri!r})"


Asset = Dataset  # Airflow 3's name


class Metadata:
    """``yield Metadata(asset, extra)`` from a task: extras for that asset's event."""

    def __init__(self, target: Any, extra: dict, alias: Any = None) -> None:
        if alias is not None:
            raise AirflowException("Metadata with an alias is not translated (asset aliases)")
        self.uri = target.uri if isinstance(target, Dataset) else str(target)
        self.extra = dict(extra)


class _OutletEvent:
    def __init__(self) -> None:
        self.extra: dict[str, Any] = {}

    def add(self, *_: Any, **__: Any) -> None:
        raise AirflowException("asset alias events are not translated")


class OutletEvents:
    """``outlet_events[asset].extra``: the extras the task sets, by asset URI."""

    def __init__(self) -> None:
        self._events: dict[str, _OutletEvent] = {}

    def __getitem__(self, key: Any) -> _OutletEvent:
        uri = key.uri if isinstance(key, Dataset) else str(key)
        return self._events.setdefault(uri, _OutletEvent())

    def extras(self) -> dict[str, dict[str, Any]]:
        return {uri: e.extra for uri, e in self._events.items() if e.extra}


def _exhaust(generator: Any, state: _Run) -> Any:
    """Airflow's rule for a generator callable: each yielded Metadata updates its
    asset's extras, anything else is ignored; the return value is the generator's."""
    while True:
        try:
            item = next(generator)
        except StopIteration as stop:
            return stop.value
        if isinstance(item, Metadata):
            state.outlet_events[item.uri].extra.update(item.extra)


OPERATOR_KEY = "__pgdurable_operator__"  # translators/airflow/python_operators.py


class BaseOperator:
    """A stand-in for Airflow's BaseOperator, for an operator class defined in the DAG
    file: ``task_id``, every constructor keyword as an attribute, ``log``. Other
    members of Airflow's class are not here (AttributeError when used)."""

    template_fields: tuple[str, ...] = ()

    def __init__(self, task_id: str | None = None, **kwargs: Any) -> None:
        self.task_id = task_id
        for key, value in kwargs.items():
            setattr(self, key, value)

    @property
    def log(self) -> Any:
        import logging

        return logging.getLogger(f"airflow.task.operators.{type(self).__name__}")

    def execute(self, context: Any) -> Any:
        raise NotImplementedError()


class EmptyOperator(BaseOperator):
    """Airflow's EmptyOperator as a base class: ``execute`` does nothing."""

    def execute(self, context: Any) -> Any:
        return None


DummyOperator = EmptyOperator  # its 1.x/2.x name


def execute_operator(cls: type, context: dict[str, Any]) -> Any:
    """Build the operator with the task's constructor arguments (template fields
    already rendered, upstream results resolved) and run ``execute(context)``."""
    kwargs = context.pop(OPERATOR_KEY, None) or {}
    return cls(**kwargs).execute(context)


def get_current_context() -> dict[str, Any]:
    """``airflow.operators.python.get_current_context()`` inside a running task."""
    state = _current.get(None)
    if state is None:
        raise AirflowException("Current context was requested but no context was found!")
    return state.context()


VARIABLES_FILE = "airflow_variables.json"


def _exported(key: str) -> tuple[bool, Any]:
    """``key`` in ``airflow_variables.json`` at the code root (what ``airflow variables
    export`` writes), when the operator deployed one."""
    root = os.environ.get("PGDURABLE_CODE_ROOT")
    path = os.path.join(root, VARIABLES_FILE) if root else None
    if path is None or not os.path.isfile(path):
        return False, None
    with open(path, encoding="utf-8") as handle:
        values = json.load(handle)
    if not isinstance(values, dict) or key not in values:
        return False, None
    return True, values[key]


class Variable:
    """``Variable.get``: the instance's df var of that name, else the deployed
    ``airflow_variables.json``, else ``default_var`` (Airflow's KeyError without one)."""

    @staticmethod
    def get(key: str, default_var: Any = _UNSET, deserialize_json: bool = False) -> Any:
        state = _current.get(None)
        values = (state.payload.get("variables") or {}) if state is not None else {}
        value = values.get(key)
        if value is not None and value != "{" + key + "}":  # set: the reference was replaced
            return json.loads(value) if deserialize_json else value
        found, exported = _exported(key)
        if found:
            if isinstance(exported, str):
                return json.loads(exported) if deserialize_json else exported
            return exported if deserialize_json else json.dumps(exported)
        if default_var is _UNSET:
            raise KeyError(f"Variable {key} does not exist")
        return default_var


class Connection:
    """What ``BaseHook.get_connection`` returns: the mapped database, as the instance's role."""

    def __init__(self, conn_id: str, database: str | None) -> None:
        self.conn_id = conn_id
        self.conn_type = "postgres"
        self.host = os.environ.get("PGDURABLE_PGHOST") or None
        self.port = (
            int(os.environ["PGDURABLE_PGPORT"]) if os.environ.get("PGDURABLE_PGPORT") else None
        )
        self.schema = database or os.environ.get("PGDURABLE_DATABASE") or None
        self.login = os.environ.get("PGDURABLE_ROLE") or None
        self.password = None  # never the worker's: libpq finds the role's own credentials
        self.extra = "{}"

    @property
    def extra_dejson(self) -> dict[str, Any]:
        return {}

    def conninfo(self) -> str:
        parts = {"host": self.host, "port": self.port, "dbname": self.schema, "user": self.login}
        return " ".join(
            f"{k}='" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'"
            for k, v in parts.items()
            if v is not None
        )

    def get_uri(self) -> str:
        from urllib.parse import quote

        host = f"{self.host or ''}:{self.port}" if self.port else (self.host or "")
        return f"postgresql://{quote(self.login or '')}@{host}/{quote(self.schema or '')}"


def _connection(conn_id: str) -> Connection:
    state = _current.get(None)
    known = (state.payload.get("connections") or {}) if state is not None else {}
    if conn_id not in known:
        raise AirflowException(
            f"The conn_id `{conn_id}` isn't defined (not mapped by the import's --connections)"
        )
    return Connection(conn_id, known[conn_id])


class BaseHook:
    """``BaseHook.get_connection(conn_id)`` for the connections the translation mapped."""

    @classmethod
    def get_connection(cls, conn_id: str) -> Connection:
        return _connection(conn_id)


class PostgresHook(BaseHook):
    """A psycopg connection to the mapped database, logged in as the instance's role."""

    def __init__(self, *args: Any, postgres_conn_id: str = "postgres_default", **kwargs: Any):
        conn_id = kwargs.pop("conn_id", None) or (args[0] if args else postgres_conn_id)
        self.postgres_conn_id = conn_id
        self.connection = _connection(conn_id)

    def get_conn(self) -> Any:
        import psycopg  # the worker's own driver

        return psycopg.connect(self.connection.conninfo())

    def get_records(self, sql: str, parameters: Any = None) -> list[tuple[Any, ...]]:
        with self.get_conn() as conn:
            return list(conn.execute(sql, parameters).fetchall())

    def get_first(self, sql: str, parameters: Any = None) -> tuple[Any, ...] | None:
        with self.get_conn() as conn:
            return conn.execute(sql, parameters).fetchone()

    def run(self, sql: str | list[str], autocommit: bool = False, parameters: Any = None) -> None:
        statements = [sql] if isinstance(sql, str) else list(sql)
        with self.get_conn() as conn:
            for statement in statements:
                conn.execute(statement, parameters)
