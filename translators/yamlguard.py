"""Limits for reading untrusted YAML: alias bombs and deep nesting.

PyYAML's ``SafeLoader`` never runs code, but two documents of a few hundred
bytes still hurt: nine aliases of nine aliases of ... ("billion laughs")
expand to billions of values as soon as anything walks the result, and a
few thousand nested ``[`` exhaust Python's recursion limit inside the
parser. Every YAML reader of the translators composes documents through
``compose_all`` here, which measures a document's size with its aliases
expanded (in time linear in the document, shared nodes are counted once
per use but measured once) and turns both cases into ``YAMLLimitError``, a
``yaml.YAMLError``, so each reader's usual "invalid YAML" diagnostic
reports it with a clear message instead of hanging or printing a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator

import yaml

# Far above any real schedule or connections file (they have tens to
# thousands of values), far below what makes a translation slow.
MAX_EXPANDED_VALUES = 100_000


class YAMLLimitError(yaml.YAMLError):
    """A YAML document is too large once its aliases are expanded, or too deep."""


def _expanded_size(root: yaml.Node) -> int:
    sizes: dict[int, int] = {}
    # Iterative post-order walk: the nesting depth must not cost Python frames.
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if children_done or not children:
            total = 1 + sum(sizes[id(child)] for child in children)
            sizes[id(node)] = min(total, MAX_EXPANDED_VALUES + 1)
            continue
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def check(node: yaml.Node) -> None:
    """Raise YAMLLimitError when ``node`` expands to too many values."""
    if _expanded_size(node) > MAX_EXPANDED_VALUES:
        raise YAMLLimitError(
            f"the document expands to more than {MAX_EXPANDED_VALUES} values through its "
            "aliases (&anchor/*alias); write the values out or split the file"
        )


def too_deep() -> YAMLLimitError:
    return YAMLLimitError(
        "the document is nested too deeply to read; flatten its lists and mappings"
    )


def compose_all(loader: yaml.SafeLoader) -> Iterator[yaml.Node]:
    """The checked nodes of every document ``loader`` reads."""
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                check(node)
                yield node
    except RecursionError:
        raise too_deep() from None


def safe_load(text: str) -> object:
    """``yaml.safe_load`` (one document) with the limits above."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        check(node)
        return loader.construct_document(node)
    except RecursionError:
        raise too_deep() from None
    finally:
        loader.dispose()
