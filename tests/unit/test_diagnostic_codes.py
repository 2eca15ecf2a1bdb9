"""Every diagnostic code is documented in MIGRATING.md, and codes keep their ranges."""

from __future__ import annotations

from pgdurable.diagnostics import CODES, Fidelity


def test_every_code_is_documented(repo_root):
    text = (repo_root / "MIGRATING.md").read_text()
    missing = [code for code in CODES if f"`{code}`" not in text]
    assert not missing, f"document {missing} in MIGRATING.md"


def test_code_ranges_match_their_fidelity():
    for code, info in CODES.items():
        if code.startswith("PGD1"):
            assert info.fidelity == Fidelity.FAILED, code
        elif code.startswith("PGD3"):
            assert info.fidelity == Fidelity.MANUAL, code
        else:
            assert info.fidelity in (Fidelity.EXACT, Fidelity.APPROXIMATE), code
