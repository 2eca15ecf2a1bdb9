"""What every scenario receives: the server, repetition counts and sizes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import BenchServer


@dataclass
class Context:
    server: BenchServer
    runs: int = 5
    warmup: int = 1
    quick: bool = False  # small sizes: checks that the runner works, figures mean little
    progress: Callable[[str], None] = lambda message: None
    peer_venv: Path | None = None
    shared: dict[str, object] = field(default_factory=dict)  # figures later scenarios compare to

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full
