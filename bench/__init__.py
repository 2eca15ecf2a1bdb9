"""pgdurable's benchmark suite (issue 10): ``python -m bench``.

Each scenario in ``bench.scenarios`` measures one property of pgdurable
against a baseline taken in the same run (the physical floor, or a peer
library on the same server). ``bench.harness`` starts the throwaway
PostgreSQL and repeats measurements; ``bench.report`` writes BENCHMARKS.md.
Nothing here runs in the test suite except a smoke run of the runner.
"""
