"""Safe, line-aware YAML loading for the Sidekiq and Kubernetes readers.

Documents are composed with PyYAML's ``SafeLoader`` (no object construction
from tags, so a config can never run code) and converted by hand so that
every mapping remembers the line of each key: diagnostics then point at the
entry that caused them. ``---``-separated documents are all returned.

Alias bombs and deep nesting are refused (``yamlguard``). Invalid YAML
raises ``SourceParseError`` naming the file, line and column
and saying what to fix (``import-queue`` reports that file as failed and
carries on with the others).
"""

from __future__ import annotations

from typing import Any

import yaml

from pgdurable.errors import SourceParseError
from pgdurable.translators import yamlguard


class YMap(dict):
    """A mapping that knows the 1-based line of itself and of each key."""

    line: int
    key_lines: dict[Any, int]

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


def _convert(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves '<<' merge keys, as safe_load does
        result = YMap()
        result.line = node.start_mark.line + 1
        result.key_lines = {}
        for key_node, value_node in node.value:
            key = _convert(loader, key_node)
            if isinstance(key, list | dict):
                key = str(key)
            result[key] = _convert(loader, value_node)
            result.key_lines[key] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(loader, child) for child in node.value]
    return loader.construct_object(node, deep=True)


def _fix_hint(problem: str) -> str:
    if "could not determine a constructor" in problem:
        return "remove the language-specific tag (e.g. !ruby/...); only plain YAML is read"
    if "mapping values are not allowed" in problem:
        return "check the indentation, or quote a value that contains ': '"
    if "found character '\\t'" in problem:
        return "indent with spaces, not tabs"
    return "fix the YAML syntax at that position"


def load_all(text: str, file: str) -> list[tuple[Any, int]]:
    """Every document of ``text`` with its first line; raises SourceParseError."""
    documents: list[tuple[Any, int]] = []
    loader = None
    try:
        # The reader checks the characters at once (NUL and other controls are
        # refused), so even constructing the loader can raise a YAMLError.
        loader = yaml.SafeLoader(text)
        for node in yamlguard.compose_all(loader):
            try:
                documents.append((_convert(loader, node), node.start_mark.line + 1))
            except RecursionError:
                raise yamlguard.too_deep() from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = str(getattr(exc, "problem", None) or exc).strip()
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else file
        hint = "" if isinstance(exc, yamlguard.YAMLLimitError) else f"; {_fix_hint(problem)}"
        raise SourceParseError(f"{where}: invalid YAML: {problem}{hint}") from exc
    finally:
        if loader is not None:
            loader.dispose()
    return documents


def symbol(key: Any) -> Any:
    """A Ruby-style symbol key (``:schedule:`` or ``:schedule``) as a plain name."""
    if isinstance(key, str) and key.startswith(":"):
        return key.strip(":")
    return key
