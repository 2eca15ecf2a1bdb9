"""The Airflow translator: DAG files -> one workflow per DAG.

``read_paths(paths)`` is the only part that touches the file system: it
finds ``*.py`` files (recursively, in name order) and returns their text,
plus a reader for ``.sql`` templates. ``translate(files, ctx, connections,
read_template)`` is pure: each file is read statically (``visitor.py``,
never imported), each DAG compiled (``compile.py``). A file that does not
parse is one ``failed`` item with its line (PGD104); a file without a DAG is
skipped; a bad DAG never stops the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pgdurable.translators.airflow import compile as compiler
from pgdurable.translators.airflow import templates
from pgdurable.translators.airflow.connections import Connections
from pgdurable.translators.airflow.tasks import Context
from pgdurable.translators.airflow.visitor import ReadError, read
from pgdurable.translators.base import ItemResult, TranslateContext, registry

from pgdurable.diagnostics import Collector, Diagnostic, SourceRef

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


def translate(
    files: Sequence[SourceFile],
    ctx: TranslateContext,
    connections: Connections | None = None,
    read_template: Callable[[str], str | None] = read_template,
) -> Batch:
    """One result per DAG (and per unreadable file), in file order."""
    connections = connections or Connections()
    batch = Batch([])
    pending: list[tuple[str, SourceRef, Callable[[str], ItemResult]]] = []
    for f in files:
        if f.text.startswith("\0"):
            ref = SourceRef(f.path)
            pending.append(
                (
                    Path(f.path).stem,
                    ref,
                    _failed(ref, "PGD104", f"cannot read the file: {f.text[1:]}"),
                )
            )
            continue
        if "DAG" not in f.text and "dag" not in f.text:
            batch.skipped.append(f.path)
            continue
        try:
            dag_file = read(f.path, f.text)
        except ReadError as exc:
            ref = SourceRef(f.path, exc.line)
            pending.append((Path(f.path).stem, ref, _failed(ref, "PGD104", str(exc))))
            continue
        except Exception as exc:  # a reader bug must not lose the batch
            ref = SourceRef(f.path)
            message = f"internal error while reading: {type(exc).__name__}: {exc}"
            pending.append((Path(f.path).stem, ref, _failed(ref, "PGD104", message)))
            continue
        if not dag_file.dags:
            batch.skipped.append(f.path)
            continue
        for dag in dag_file.dags:
            pending.append(
                (dag.dag_id, dag.ref, _compiler(dag, dag_file, ctx, connections, read_template))
            )
    counts: dict[str, int] = {}
    for name, _, _ in pending:
        counts[name] = counts.get(name, 0) + 1
    for name, ref, build in pending:
        unique = name if counts[name] == 1 else f"{name}__{Path(ref.file).stem}"
        batch.results.append(build(unique))
    return batch


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
            diag.add("PGD105", f"{exc}; Airflow refuses the DAG")
            return ItemResult(name, dag.ref, tuple(diag.items))
        except Exception as exc:  # a compiler bug must not lose the batch
            diag.add("PGD105", f"internal error while translating: {type(exc).__name__}: {exc}")
            return ItemResult(name, dag.ref, tuple(diag.items))
        return ItemResult(name, dag.ref, tuple(diag.items), workflow)

    return build


registry.register(SOURCE, translate)
