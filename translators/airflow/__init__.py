"""The Airflow translator: DAG files -> one workflow per DAG.

``read_paths(paths)`` is the only part that touches the file system: it
finds ``*.py`` files (recursively, in name order) and returns their text,
plus a reader for ``.sql`` templates. ``translate(files, ctx, connections,
read_template)`` is pure: each file is read statically (``visitor.py``,
never imported), each DAG compiled (``compile.py``). A file that does not
parse is one ``failed`` item with its line (PGD105); a file without a DAG is
skipped; a bad DAG never stops the batch.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from pgdurable.diagnostics import Collector, Diagnostic, SourceRef
from pgdurable.parallel import map_in_processes
from pgdurable.translators.airflow import assets, python_tasks, templates
from pgdurable.translators.airflow import compile as compiler
from pgdurable.translators.airflow.connections import Connections
from pgdurable.translators.airflow.tasks import Context
from pgdurable.translators.airflow.visitor import ReadError, read
from pgdurable.translators.base import BadValue, ItemResult, TranslateContext, crash, registry

SOURCE = compiler.SOURCE


@dataclass(frozen=True)
class SourceFile:
    path: str  # as shown in reports (relative when given relative)
    text: str


@dataclass
class Batch:
    results: list[ItemResult]
    skipped: list[str] = field(default_factory=list)  # files without a DAG


def read_paths(paths: Sequence[Path]) -> list[SourceFile]:
    files: list[SourceFile] = []
    for path in paths:
        candidates = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for candidate in candidates:
            try:
                text = candidate.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                text = f"\0{exc}"  # reported as unreadable by translate()
            files.append(SourceFile(str(candidate), text))
    return files


def read_template(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


PARALLEL_FROM = 64  # files; below this a process pool costs more than it saves


def translate(
    files: Sequence[SourceFile],
    ctx: TranslateContext,
    connections: Connections | None = None,
    read_template: Callable[[str], str | None] = read_template,
    search_path_map: Sequence[tuple[str, str]] = (),
    progress: Callable[[int, int], None] | None = None,
) -> Batch:
    """One result per DAG (and per unreadable file), in file order. Large
    batches are spread over a process pool (each file is independent).
    ``search_path_map``: (old, new) folder prefixes for template_searchpath;
    ``progress(done, total)`` follows the files."""
    connections = connections or Connections()
    mapping = tuple(search_path_map)
    work = [(f, ctx, connections, read_template, mapping) for f in files]
    if len(files) >= PARALLEL_FROM and (os.cpu_count() or 1) > 1:
        per_file = map_in_processes(_translate_file, work, progress=progress)
    else:
        per_file = []
        for w in work:
            per_file.append(_translate_file(w))
            if progress is not None:
                progress(len(per_file), len(work))
    batch = Batch([])
    triggers: list[list[Trigger]] = []
    for results, skipped in per_file:
        batch.results.extend(r for r, _ in results)
        triggers.extend(t for _, t in results)
        batch.skipped.extend(skipped)
    _report_foreign_triggers(batch.results, triggers)
    _report_unproduced_assets(batch.results)
    _disambiguate(batch.results)
    return batch


def _report_foreign_triggers(results: list[ItemResult], triggers: list[list[Trigger]]) -> None:
    """A TriggerDagRunOperator whose DAG is not in this batch calls a trigger
    function no file of this import defines: the step fails until it exists."""
    known = {r.name for r in results if r.workflow is not None}
    for i, (result, found) in enumerate(zip(results, triggers, strict=True)):
        foreign = [t for t in found if t.dag_id not in known]
        if not foreign or result.workflow is None:
            continue
        added = tuple(
            Diagnostic(
                "PGD330",
                f"task {t.task_id!r} triggers DAG {t.dag_id!r}, which is not among the DAGs "
                f"translated here, so {compiler.trigger_function(t.dag_id)}() does not exist "
                "and the step fails: import that DAG's file in the same run (or apply its "
                "workflow first), or remove the trigger",
                t.ref,
            )
            for t in foreign
        )
        workflow = replace(result.workflow, start=False)
        results[i] = replace(result, diagnostics=(*result.diagnostics, *added), workflow=workflow)


def _report_unproduced_assets(results: list[ItemResult]) -> None:
    """A DAG scheduled on an asset no DAG of this batch updates runs, in Airflow, only
    when an event of that asset comes from elsewhere (a DAG of another folder, the REST
    API): the workflow is started and waits for that event just the same; the
    diagnostic gives the statement that emits it."""
    produced: set[str] = set()
    for result in results:
        if result.workflow is not None:
            produced |= assets.signalled(result.workflow.body)
    for i, result in enumerate(results):
        if result.workflow is None:
            continue
        missing = sorted(assets.awaited(result.workflow.body) - produced)
        if not missing:
            continue
        added = Diagnostic(
            "PGD295",
            "no producer among the translated DAGs: no task translated here has outlets "
            "updating " + ", ".join(repr(k) for k in missing) + ". The workflow waits for "
            "those asset events as Airflow waits for events from elsewhere (another DAG "
            "folder, the REST API); it runs only when someone emits them, as the role "
            "that runs this workflow: "
            + "; ".join(assets.emit_sql(k) for k in missing)
            + " (or import the producing DAGs' files in the same run)",
            result.source_ref,
        )
        results[i] = replace(result, diagnostics=(*result.diagnostics, added))


def _disambiguate(results: list[ItemResult]) -> None:
    """The same dag_id in several files (a dev and a prod folder, a copy): each
    gets a name of its own, from the shortest tail of its path that tells them
    apart, so no output overwrites another. Airflow itself loads only one of them
    per DAG folder, which the diagnostic says."""
    counts = Counter(r.name for r in results)
    for name, count in counts.items():
        if count < 2:
            continue
        indexes = [i for i, r in enumerate(results) if r.name == name]
        parts = [Path(results[i].source_ref.file).with_suffix("").parts for i in indexes]
        depth = max(len(p) for p in parts)
        for k in range(1, depth + 1):
            tails = ["_".join(p[-k:]) for p in parts]
            if len(set(tails)) == len(tails):
                break
        tails = [f"{t}_{n}" for n, t in enumerate(tails, 1)] if len(set(tails)) < count else tails
        files = ", ".join(results[i].source_ref.file for i in indexes)
        for i, tail in zip(indexes, tails, strict=True):
            r = results[i]
            unique = f"{name}__{tail}"
            note = Diagnostic(
                "PGD254",
                f"dag_id {name!r} is defined in several files ({files}); this one is written "
                f"as {unique!r} so none overwrites another. Airflow loads only one DAG of that "
                f"id per DAG folder, and each file defines {compiler.trigger_function(name)}(): "
                "the one applied last answers triggers. Keep the one you run",
                r.source_ref,
            )
            workflow = (
                python_tasks.renamed(replace(r.workflow, name=unique), unique)
                if r.workflow
                else None
            )
            diagnostics = r.diagnostics
            if workflow is not None and workflow.code_files:  # PGD243 names the module
                before, after = python_tasks.module_of(r.workflow), python_tasks.module_of(workflow)
                diagnostics = tuple(
                    replace(d, message=python_tasks.swap(d.message, before, after))
                    if d.code == "PGD243"
                    else d
                    for d in diagnostics
                )
            results[i] = replace(
                r, name=unique, workflow=workflow, diagnostics=(*diagnostics, note)
            )


Trigger = compiler.Trigger
Compiled = tuple[ItemResult, list[Trigger]]


def _translate_file(args) -> tuple[list[Compiled], list[str]]:
    f, ctx, connections, read_template, mapping = args
    name = Path(f.path).stem
    if f.text.startswith("\0"):
        ref = SourceRef(f.path)
        return [(_failed(ref, "PGD105", f"cannot read the file: {f.text[1:]}")(name), [])], []
    if "DAG" not in f.text and "dag" not in f.text:
        return [], [f.path]
    try:
        dag_file = read(f.path, f.text)
    except ReadError as exc:
        return [(_failed(SourceRef(f.path, exc.line), "PGD105", str(exc))(name), [])], []
    except Exception as exc:  # a reader bug must not lose the batch
        message = f"internal error while reading: {type(exc).__name__}: {exc}"
        return [(_failed(SourceRef(f.path), "PGD105", message)(name), [])], []
    if not dag_file.dags:
        return [], [f.path]
    results = [
        _compiler(dag, dag_file, ctx, connections, read_template, mapping)(dag.dag_id)
        for dag in dag_file.dags
    ]
    return results, []


def _failed(ref: SourceRef, code: str, message: str) -> Callable[[str], ItemResult]:
    return lambda name: ItemResult(name, ref, (Diagnostic(code, message, ref),))


def _compiler(dag, dag_file, ctx, connections, read_template, mapping) -> Callable[[str], Compiled]:
    def build(name: str) -> Compiled:
        diag = Collector(dag.ref)
        for code, message, ref in dag.problems:
            diag.add(code, message, ref)
        if any(code.startswith("PGD1") for code, _, _ in dag.problems):
            return ItemResult(name, dag.ref, tuple(diag.items)), []
        context = Context(
            dag=dag,
            dag_dir=compiler.dag_dir(dag_file.path),
            generation=dag_file.generation,
            connections=connections,
            portable=ctx.portable,
            diag=diag,
            read_template=read_template,
            env=templates.Env({}, dag_file.generation, {}),
            run_as=ctx.default_username,
            search_path_map=mapping,
            python_module=python_tasks.DagModule(python_tasks.module_name(name)),
        )
        try:
            workflow = compiler.workflow(dag, context, name)
            workflow = python_tasks.attach(workflow, context.python_module, dag_file.path)
        except compiler.graph.CycleError as exc:
            diag.add("PGD106", f"{exc}; Airflow refuses the DAG")
            return ItemResult(name, dag.ref, tuple(diag.items)), []
        except BadValue as exc:  # a value Airflow refuses too
            diag.add("PGD108", str(exc), SourceRef(dag.ref.file, exc.line or dag.ref.line))
            return ItemResult(name, dag.ref, tuple(diag.items)), []
        except Exception as exc:  # a compiler bug must not lose the batch
            failed = (*diag.items, crash("PGD106", exc, dag.ref))
            return ItemResult(name, dag.ref, failed), []
        return ItemResult(name, dag.ref, tuple(diag.items), workflow), context.triggers

    return build


registry.register(SOURCE, translate)
