"""The published-results check: passes on CompressAI's own numbers, fails loudly on anything else."""
import copy

import pytest
import torch
from fakezoo import fake_zoo_small, fakezoo_store  # noqa: F401 (fixtures)

from vrlic.codec.quantization import PAPER_LAMBDAS
from vrlic.measure.reference import (ReferenceMismatch, check_against_published, check_anchors, compare_to_published,
                             load_published, points_by_quality, published_curves, reference_dir)

ARCHS = ["bmshj2018-hyperprior", "mbt2018-mean", "mbt2018"]


pytestmark = [pytest.mark.filterwarnings("ignore:zoo weights are checked against the override registry"), pytest.mark.usefixtures("one_thread")]


def as_measured(arch):
    """The published zoo curve in the shape evaluate_anchors writes (λ column, no quality column)."""
    res = load_published(arch)
    r = res["results"]
    r["lmbda"] = [PAPER_LAMBDAS[q - 1] for q in r.pop("quality")]
    return res


def test_reference_files_are_in_the_project():
    d = reference_dir()
    assert (d / "SOURCE.md").exists() and d.parent.name == "reference"
    curves = published_curves()
    assert set(curves) == set(ARCHS) and all(len(c["results"]["bpp"]) == 8 for c in curves.values())
    assert all(len(c["results"]["bpp"]) == 16 for c in published_curves("vbr").values())


@pytest.mark.parametrize("arch", ARCHS)
def test_published_numbers_pass(arch):
    rows = check_against_published(arch, as_measured(arch))
    assert [r["quality"] for r in rows] == list(range(1, 9)) and all(r["ok"] for r in rows)
    assert all(r["psnr_gap_db"] == 0 and r["bpp_gap_pct"] == 0 for r in rows)


def test_a_subset_in_any_order_and_explicit_qualities():
    res = as_measured("mbt2018")
    r = res["results"]
    keep = [7, 0, 4]
    sub = {"results": {k: [v[i] for i in keep] for k, v in r.items()}}
    assert [row["quality"] for row in check_against_published("mbt2018", sub)] == [1, 5, 8]
    del sub["results"]["lmbda"]
    with pytest.raises(ValueError, match="pass qualities"):
        check_against_published("mbt2018", sub)
    assert len(check_against_published("mbt2018", sub, qualities=[8, 1, 5])) == 3


def test_tampered_numbers_fail_naming_quality_and_gap():
    res = as_measured("mbt2018-mean")
    bad = copy.deepcopy(res)
    bad["results"]["psnr-rgb"][2] += 0.08
    with pytest.raises(ReferenceMismatch) as e:
        check_against_published("mbt2018-mean", bad)
    msg = str(e.value)
    assert "mbt2018-mean: 1 of 8 qualities" in msg and "quality 3:" in msg and "gap +0.080 dB" in msg
    print(msg)
    bad = copy.deepcopy(res)
    bad["results"]["bpp"][6] *= 0.99
    with pytest.raises(ReferenceMismatch, match=r"quality 7: .*\(gap -1\.00 %\)"):
        check_against_published("mbt2018-mean", bad)
    # within tolerance: 0.03 dB and 0.3 %
    ok = copy.deepcopy(res)
    ok["results"]["psnr-rgb"][0] -= 0.03
    ok["results"]["bpp"][0] *= 1.003
    check_against_published("mbt2018-mean", ok)
    # tolerances are parameters
    with pytest.raises(ReferenceMismatch):
        check_against_published("mbt2018-mean", ok, psnr_tol=0.01)
    nan = copy.deepcopy(res)
    nan["results"]["psnr-rgb"][1] = float("nan")
    assert not compare_to_published("mbt2018-mean", nan)[1]["ok"]


def test_fake_zoo_models_fail_loudly(fake_zoo_small, tmp_path):
    """Random weights, downloaded and measured like the paper profile does: far from the published curve."""
    from vrlic.study.anchors import evaluate_anchors, zoo_anchor
    from vrlic.data.datasets import fetch_kodak

    picks = {"bmshj2018-hyperprior": 1, "mbt2018-mean": 5, "mbt2018": 8}
    for arch, q in picks.items():
        fake_zoo_small.add_zoo(arch, q)
    kodak = fetch_kodak(progress=False)[:1]
    anchors = [zoo_anchor(a, q, tmp_path / "models") for a, q in picks.items()]
    measured = evaluate_anchors(anchors, kodak, torch.device("cpu"), progress=False)
    assert {a: set(points_by_quality(measured[a])) for a in ARCHS} == {a: {q} for a, q in picks.items()}
    with pytest.raises(ReferenceMismatch) as e:
        check_anchors(measured)
    msg = str(e.value)
    for a, q in picks.items():
        assert f"{a}: 1 of 1 qualities do not reproduce" in msg
        assert f"quality {q}: PSNR" in msg
    print(msg)
