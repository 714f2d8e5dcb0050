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


# ----- the method switches (vrlic.pipeline.method) -----------------------------------------------
def test_full_method_arms_are_the_pipelines(root):
    params = load_params(root / "params.yaml")
    assert params["method"] == {"moo": "mgda", "offsets": True, "vr_hyper": True}
    got = {s: stage_params(s, params, "mini") for s in ("posttrain", "offsets", "hyperlatent")}
    assert [got[s]["method_arm"] for s in got] == ["mgda", "offsets", "vr_z"]
    assert all(not g["left_out"] for g in got.values())
    assert got["posttrain"]["variants"]["weighted_sum"] == {"moo": "weighted_sum"}  # stage 02: no offsets, no VR z
    assert got["offsets"]["variants"]["decoder"] == {"moo": "mgda", "offsets": False, "train": "decoder"}
    assert got["hyperlatent"]["variants"]["fixed_z"] == {"moo": "mgda", "offsets": True, "vr_hyper": False}
    assert stage_params("base_models", params, "mini").get("method") is None  # stage 01 does not read it


@pytest.mark.parametrize("switch,value,arms", [
    ("moo", "weighted_sum", (["weighted_sum"], ["offsets", "decoder"], ["fixed_z", "vr_z"])),
    ("offsets", False, (["mgda", "weighted_sum"], ["decoder"], ["fixed_z", "vr_z"])),
    ("vr_hyper", False, (["mgda", "weighted_sum"], ["offsets", "decoder"], ["fixed_z"])),
])
def test_a_switch_removes_its_modification_from_every_stage(root, switch, value, arms):
    from vrlic.pipeline.method import STAGE_SWITCHES, uses

    params = load_params(root / "params.yaml")
    params["method"][switch] = value
    for stage, expected in zip(("posttrain", "offsets", "hyperlatent"), arms):
        p = stage_params(stage, params, "mini")
        assert list(p["variants"]) == expected, stage
        if switch in STAGE_SWITCHES[stage]:
            assert not any(uses(s, switch) for s in p["variants"].values()), stage
            assert all(f"method.{switch}" in why for why in p["left_out"].values())
        arm = p["variants"][p["method_arm"]]
        assert all(arm[k] == params["method"][k] for k in STAGE_SWITCHES[stage])


def test_method_errors_and_an_added_solver(root):
    from vrlic.pipeline.method import resolve_arms
    from vrlic.pipeline.schema import ParamsError, validate

    params = load_params(root / "params.yaml")
    params["method"]["moo"] = "cagrad"  # no declared arm uses it: stage 02 adds one
    p = stage_params("posttrain", params, "mini")
    assert p["method_arm"] == "cagrad" and p["variants"]["cagrad"] == {"moo": "cagrad"} and "mgda" in p["left_out"]
    params["method"] = {"offset": False}
    with pytest.raises(ParamsError, match="method.offset"):
        validate(params)
    with pytest.raises(ValueError, match="no arm of"):
        resolve_arms("offsets", {"offsets": False}, {"offsets": {"offsets": True}})


def test_an_interactive_run_writes_to_the_scratch_folder(root, tmp_path, monkeypatch):
    """A notebook run by hand (root None) writes under outputs/scratch/<profile>, with the earlier
    stages' outputs copied there from the project: the project's own files are not touched."""
    import json

    from conftest import copy_project
    from vrlic.pipeline.start import notebook_params

    proj = copy_project(tmp_path / "proj")
    monkeypatch.setenv("VRLIC_ROOT", str(proj))
    (proj / "outputs/models/base/arch").mkdir(parents=True)
    (proj / "outputs/models/base/arch/m.pth.tar").write_bytes(b"model")
    (proj / "results/anchors.json").write_text(json.dumps({"models": {}}))
    before = {p: p.read_bytes() for p in (proj / "results").rglob("*") if p.is_file()}
    out, P = notebook_params("posttrain", None)
    assert out == proj / "outputs" / "scratch" / "mini"
    assert (out / "outputs/models/base/arch/m.pth.tar").read_bytes() == b"model"
    assert (out / "results/anchors.json").exists() and not (out / "outputs/models/base").is_symlink()
    assert P["data"]["dir"] == str(proj / "data" / "embedded")
    assert {p: p.read_bytes() for p in (proj / "results").rglob("*") if p.is_file()} == before
    assert notebook_params("posttrain", "project")[0] == proj  # what `dvc repro` passes
