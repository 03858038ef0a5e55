"""IBSI chapter 1 digital phantom: the features that match the reference stay matching."""

from __future__ import annotations

from pathlib import Path

from radserve.radiomics import render_markdown, run_phantom

# Every PyRadiomics feature with an IBSI counterpart that matches IBSI's reference value.
EXPECTED_FAILURES = {
    ("shape", "MinorAxisLength"),  # population vs sample covariance
    ("shape", "LeastAxisLength"),
    ("firstorder", "Kurtosis"),  # kurtosis, not excess kurtosis
}
DEPRECATED = {
    ("glcm", "SumVariance"),
    ("glcm", "Dissimilarity"),
    ("gldm", "DependencePercentage"),
    ("gldm", "GrayLevelNonUniformityNormalized"),
}


def test_phantom_matches_ibsi_reference_values(shared_data: Path) -> None:
    rows = run_phantom(shared_data / "ibsi1_digital_phantom")
    by_status: dict[str, set[tuple[str, str]]] = {}
    for row in rows:
        by_status.setdefault(row.status, set()).add((row.feature_class, row.feature))
    assert by_status["fail"] == EXPECTED_FAILURES
    assert by_status["no value"] == DEPRECATED
    assert len(by_status["pass"]) == 102
    assert "no reference" not in by_status
    # Every feature radserve writes with an IBSI code matches IBSI.
    coded = [r for r in rows if r.ibsi_code is not None and r.value is not None]
    assert len(coded) == 101
    assert {r.status for r in coded} == {"pass"}
    kurtosis = next(r for r in rows if r.feature == "Kurtosis")
    assert kurtosis.value is not None and kurtosis.reference is not None
    assert abs(kurtosis.value - 3 - kurtosis.reference) <= 0.0005  # excess kurtosis matches
    volume = next(r for r in rows if r.feature == "MeshVolume")
    assert (volume.reference, volume.tolerance, volume.ibsi_code) == (556.0, 4.0, "RNU0")


def test_conformance_document_is_current(shared_data: Path) -> None:
    rows = run_phantom(shared_data / "ibsi1_digital_phantom")
    document = Path(__file__).resolve().parents[2] / "docs" / "ibsi_conformance.md"
    assert document.read_text(encoding="utf-8") == render_markdown(rows)
