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
from pgdurable.translators.airflow import compile as compiler
from pgdurable.translators.airflow import templates
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
    progress: Callable[[int, int], None] | None = None,
) -> Batch:
    """One result per DAG (and per unreadable file), in file order. Large
    batches are spread over a process pool (each file is independent);
    ``progress(done, total)`` follows the files."""
    connections = connections or Connections()
    work = [(f, ctx, connections, read_template) for f in files]
    if len(files) >= PARALLEL_FROM and (os.cpu_count() or 1) > 1:
        per_file = map_in_processes(_translate_file, work, progress=progress)
    else:
        per_file = []
        for w in work:
            per_file.append(_translate_file(w))
            if progress is not None:
                progress(len(per_file), len(work))
    batch = Batch([])
    for results, skipped in per_file:
        batch.results.extend(results)
        batch.skipped.extend(skipped)
    counts = Counter(r.name for r in batch.results)
    for i, r in enumerate(batch.results):
        if counts[r.name] > 1:  # the same dag_id in several files
            unique = f"{r.name}__{Path(r.source_ref.file).stem}"
            workflow = replace(r.workflow, name=unique) if r.workflow else None
            batch.results[i] = replace(r, name=unique, workflow=workflow)
    return batch


def _translate_file(args) -> tuple[list[ItemResult], list[str]]:
    f, ctx, connections, read_template = args
    name = Path(f.path).stem
    if f.text.startswith("\0"):
        ref = SourceRef(f.path)
        return [_failed(ref, "PGD105", f"cannot read the file: {f.text[1:]}")(name)], []
    if "DAG" not in f.text and "dag" not in f.text:
        return [], [f.path]
    try:
        dag_file = read(f.path, f.text)
    except ReadError as exc:
        return [_failed(SourceRef(f.path, exc.line), "PGD105", str(exc))(name)], []
    except Exception as exc:  # a reader bug must not lose the batch
        message = f"internal error while reading: {type(exc).__name__}: {exc}"
        return [_failed(SourceRef(f.path), "PGD105", message)(name)], []
    if not dag_file.dags:
        return [], [f.path]
    results = [
        _compiler(dag, dag_file, ctx, connections, read_template)(dag.dag_id)
        for dag in dag_file.dags
    ]
    return results, []


def _failed(ref: SourceRef, code: str, message: str) -> Callable[[str], ItemResult]:
    return lambda name: ItemResult(name, ref, (Diagnostic(code, message, ref),))


def _compiler(dag, dag_file, ctx, connections, read_template) -> Callable[[str], ItemResult]:
    def build(name: str) -> ItemResult:
        diag = Collector(dag.ref)
        for code, message, ref in dag.problems:
            diag.add(code, message, ref)
        if any(code.startswith("PGD1") for code, _, _ in dag.problems):
            return ItemResult(name, dag.ref, tuple(diag.items))
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
        )
        try:
            workflow = compiler.workflow(dag, context, name)
        except compiler.graph.CycleError as exc:
            diag.add("PGD106", f"{exc}; Airflow refuses the DAG")
            return ItemResult(name, dag.ref, tuple(diag.items))
        except BadValue as exc:  # a value Airflow refuses too
            diag.add("PGD108", str(exc), SourceRef(dag.ref.file, exc.line or dag.ref.line))
            return ItemResult(name, dag.ref, tuple(diag.items))
        except Exception as exc:  # a compiler bug must not lose the batch
            return ItemResult(name, dag.ref, (*diag.items, crash("PGD106", exc, dag.ref)))
        return ItemResult(name, dag.ref, tuple(diag.items), workflow)

    return build


registry.register(SOURCE, translate)
