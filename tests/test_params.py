import subprocess
import sys

import pytest
import yaml

from vrlic.pipeline.params import PROFILES, STAGES, active_profile, deep_merge, load_params, stage_params


def test_every_profile_overrides_every_stage(root):
    params = load_params(root / "params.yaml")
    assert params["profile"] == "mini", "the embedded default must stay the mini profile"
    assert set(params["profiles"]) == set(PROFILES)
    for name, prof in params["profiles"].items():
        # DVC tracks profiles.<profile>.<stage>: the key must exist, even if empty
        assert {"architectures", "lambdas", "data", *STAGES} <= set(prof), name
        assert sorted(prof["lambdas"]) == prof["lambdas"]


def test_defaults_merged_with_overrides(root):
    params = load_params(root / "params.yaml")
    mini = stage_params("posttrain", params, "mini")
    smoke = stage_params("posttrain", params, "smoke")
    assert mini["common"]["lr"] == smoke["common"]["lr"] == params["posttrain"]["common"]["lr"]
    assert smoke["common"]["iters"] == params["profiles"]["smoke"]["posttrain"]["common"]["iters"]
    assert smoke["lambdas"] == params["profiles"]["smoke"]["lambdas"]
    assert mini["data"]["dir"] == params["paths"]["data"] and mini["paths"] == params["paths"]
    paper = stage_params("base_models", params, "paper")
    assert paper["source"] == "zoo" and paper["data"]["source"] == "kodak"


def test_deep_merge_keeps_base():
    base = {"a": {"b": 1, "c": 2}, "d": [1]}
    out = deep_merge(base, {"a": {"b": 5}, "d": [2]})
    assert out == {"a": {"b": 5, "c": 2}, "d": [2]} and base["a"]["b"] == 1


def test_profile_switch_and_environment_refused(root, monkeypatch):
    params = load_params(root / "params.yaml")
    assert active_profile(dict(params, profile="smoke")) == "smoke"
    with pytest.raises(ValueError, match="unknown profile"):
        active_profile(dict(params, profile="fast"))
    monkeypatch.setenv("VRLIC_PROFILE", "smoke")
    with pytest.raises(ValueError, match="DVC cannot see"):
        active_profile(params)
    monkeypatch.delenv("VRLIC_PROFILE")
    with pytest.raises(KeyError, match="no section"):
        stage_params("nope", params)


def test_editing_another_profile_leaves_dvc_status_clean(root, tmp_path):
    """dvc.yaml tracks only the active profile's keys: `dvc status` must not see an edit of another."""
    proj = tmp_path / "p"
    proj.mkdir()
    for f in ("params.yaml", "dvc.yaml"):
        (proj / f).write_text((root / f).read_text())
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run(["git", "init", "-q"], cwd=proj, check=True)
    subprocess.run(dvc + ["init", "-q"], cwd=proj, check=True)

    def tracked(stage):
        r = subprocess.run(dvc + ["stage", "list", "--name-only"], cwd=proj, capture_output=True, text=True, check=True)
        assert stage in r.stdout
        from dvc.repo import Repo

        with Repo(str(proj)) as repo:
            (st,) = [s for s in repo.index.stages if s.name == stage]
            return {k for d in st.deps if hasattr(d, "params") and d.params for k in d.params}

    keys = tracked("posttrain")
    assert "profiles.mini.posttrain" in keys and not any(k.startswith("profiles.paper") for k in keys)
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["profile"] = "paper"
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "profiles.paper.posttrain" in tracked("posttrain")
