"""Helm charts among the input files: recognised, never rendered.

A chart's ``templates/*.yaml`` are Go templates (``{{ .Values.schedule |
quote }}``, ``{{- if ... }}``): the CronJob they describe only exists once
Helm renders them with the release's values, so they are not YAML a reader
can trust (most do not even parse). A template that holds a CronJob is a
failed item with the line of its first template action and the fix (render
with ``helm template`` and import the output); the rest of a chart
(``Chart.yaml``, ``values*.yaml``, ``_helpers.tpl``, ``NOTES.txt``, other
templates) is skipped with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_ACTION = re.compile(r"\{\{-?\s*[^{}]*?-?\}\}")
_CRONJOB = re.compile(r"^\s*kind:\s*[\"']?CronJob\b", re.MULTILINE)
_CHART_FILES = {"Chart.yaml", "Chart.lock", "requirements.yaml", "values.schema.json"}
RENDER = (
    "render the chart first (`helm template RELEASE CHART -f values.yaml > rendered.yaml`) "
    "and import the rendered manifest"
)


@dataclass(frozen=True)
class ChartFile:
    """A file of a Helm chart: a CronJob template (failed) or another part (skipped)."""

    reason: str
    cronjob: bool = False
    line: int | None = None


def _in_chart(path: Path) -> bool:
    """The file lies in a chart: a folder above it (or its own) holds Chart.yaml."""
    return any((folder / "Chart.yaml").is_file() for folder in [path.parent, *path.parents][:4])


def chart_file(path: Path) -> bool:
    """A chart file whose suffix would otherwise not be read (``_helpers.tpl``)."""
    return path.suffix == ".tpl" or (path.name == "NOTES.txt" and path.parent.name == "templates")


def recognise(path: Path, text: str) -> ChartFile | None:
    """What the file is in a Helm chart, or None when it is not part of one."""
    action = _ACTION.search(text)
    in_chart = _in_chart(path)
    if path.name in _CHART_FILES and in_chart:
        return ChartFile("Helm chart metadata; it holds no CronJob")
    if path.name.startswith("values") and path.suffix in (".yaml", ".yml") and in_chart:
        return ChartFile(
            "Helm values: they reach a CronJob only through the chart's templates; " + RENDER
        )
    if action is None:
        return None
    line = text.count("\n", 0, action.start()) + 1
    if _CRONJOB.search(text):
        return ChartFile(
            f"Helm template: line {line} holds the template action "
            f"{action.group(0)[:60]!r}, so the CronJob exists only once Helm renders it; " + RENDER,
            cronjob=True,
            line=line,
        )
    if path.suffix == ".tpl" or path.name.startswith("_") or in_chart:
        return ChartFile("Helm template without a CronJob")
    return None
