"""Which SQL step texts the worker may run as one exactly-once transaction.

A SQL step runs as ``BEGIN; <text>`` and its completion is written in that
transaction (``sql_step``). Text with a top-level transaction-control
statement (``COMMIT; BEGIN``, ``ROLLBACK``, ``START TRANSACTION``...) would
commit part of the step on its own, so a crash afterwards applies that part
twice while the node says exactly-once. df.start refuses such text
(``pgdurable.transaction_control_in``, migration 0011); the worker checks
again what it is about to send, because a raw ``{variable}`` substitution or
rows written around df.start can bring it back.

"Top level" is what PostgreSQL's lexer sees with standard_conforming_strings
on (the worker starts its step sessions with it on): statements inside
strings, dollar-quoted bodies (DO, CREATE FUNCTION), comments and
``BEGIN ATOMIC ... END`` bodies do not count; savepoints are fine.
"""

from __future__ import annotations

from pgdurable.sqltext import SqlLexError, tokenize

_CONTROL_FIRST_WORDS = frozenset({"begin", "commit", "end", "abort"})
# Every statement _controls_transaction accepts starts with one of these
# words. PostgreSQL matches keywords in ASCII only, so text whose lowercase
# holds none of them cannot control a transaction and need not be lexed
# (lexing was the worker's largest own cost per step; issue 22).
_CONTROL_WORDS = (*_CONTROL_FIRST_WORDS, "start", "rollback")


def transaction_control(text: str) -> str | None:
    """The leading words of the first top-level transaction-control statement
    of ``text`` (e.g. ``"commit"``), or None. Text that does not lex (an
    unterminated string) gives None: the server refuses it with its own error."""
    lowered = text.lower()
    if not any(word in lowered for word in _CONTROL_WORDS):
        return None
    try:
        tokens = tokenize(text)
    except SqlLexError:
        return None
    words: list[str] = []  # leading tokens of the current statement ("" for a non-word)
    atomic = 0  # nesting inside BEGIN ATOMIC ... END
    for token in tokens:
        if token.kind in ("space", "comment"):
            continue
        if token.kind == "semicolon":
            if atomic:
                continue
            if _controls_transaction(words):
                return " ".join(words[:3])
            words = []
            continue
        word = (token.value or "") if token.kind == "ident" else ""
        if atomic and word in ("case", "begin"):
            atomic += 1
        elif atomic and word == "end":
            atomic -= 1
        elif word == "atomic" and len(words) > 1 and words[-1] == "begin":
            atomic = 1
        words.append(word)
    if not atomic and _controls_transaction(words):
        return " ".join(words[:3])
    return None


def _controls_transaction(words: list[str]) -> bool:
    if not words:
        return False
    if words[0] in _CONTROL_FIRST_WORDS:
        return True
    if words[:2] == ["start", "transaction"]:
        return True
    return words[0] == "rollback" and "to" not in words[:6]


def refusal(statement: str) -> str:
    """The node's error for text that holds ``statement`` (df.start's words)."""
    return (
        f"SQL step contains transaction control ({statement.upper()}): a step runs in one "
        "transaction, which records its completion, so a COMMIT inside it would break "
        "exactly-once. Split the text at that statement into separate steps "
        "(first ~> second), or move the work into a procedure (CALL runs it at least once)."
    )
