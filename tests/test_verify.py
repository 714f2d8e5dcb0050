"""`make verify`: identical, within the seed noise, or not reproduced — on a throw-away git repo."""
import csv
import json
import subprocess

import pytest

from vrlic.verify import verify

HEADER = ["arch", "variant", "reference", "metric", "pchip", "seed_spread", "verdict"]


def _write(root, pchip=10.0, verdict="worse", spread=2.0, loss=1.5):
    res = root / "results"
    res.mkdir(exist_ok=True)
    (res / "anchors.json").write_text(json.dumps({"code_version": "abc", "models": {"a": {"loss": loss, "name": "x"}}}))
    with open(res / "bd_rates.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerow(["a", "MGDA", "scratch", "PSNR", pchip, spread, verdict])


@pytest.fixture
def repo(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "params.yaml").write_text("profile: smoke\n")
    _write(tmp_path)
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "r"], cwd=tmp_path, check=True)
    return tmp_path


def test_identical_apart_from_the_stamp(repo):
    (repo / "results/anchors.json").write_text(json.dumps({"code_version": "other", "models": {"a": {"loss": 1.5, "name": "x"}}}))
    code, lines = verify(repo)
    assert code == 0 and lines[-1] == "verdict: identical"


def test_within_the_seed_noise(repo):
    _write(repo, pchip=11.5, loss=1.6)
    code, lines = verify(repo)
    assert code == 1, lines
    assert any("0 identical, 1 differ (largest by 0.1" in line for line in lines if line.startswith("results/anchors.json"))


@pytest.mark.parametrize("change", [dict(pchip=12.5), dict(verdict="no difference"), dict(spread="nan", pchip=10.1)])
def test_not_reproduced(repo, change):
    subprocess.run(["git", "rm", "-q", "--cached", "results/bd_rates.csv"], cwd=repo, check=True)
    _write(repo, **{k: v for k, v in change.items() if k != "spread"}, spread=change.get("spread", 2.0))
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "r2"], cwd=repo, check=True)
    _write(repo, pchip=10.0, verdict="worse")  # the committed file now holds the change; the tree the original
    code, lines = verify(repo)
    assert code == 2 and lines[-2] == "verdict: not reproduced", lines


def test_a_changed_parameters_record_is_listed_not_judged(repo):
    (repo / "results/anchors.json").write_text(json.dumps({"code_version": "abc", "params": {"lr": 0.1},
                                                           "models": {"a": {"loss": 1.5, "name": "x"}}}))
    code, lines = verify(repo)
    assert code == 0 and any("parameters record differs" in line for line in lines), lines
