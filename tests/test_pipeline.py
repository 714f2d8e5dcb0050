"""The notebooks through papermill, and one `dvc repro` of the smoke profile, in temporary copies."""
import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import copy_project

pytestmark = pytest.mark.slow


def _smoke_params(stage, root):
    from vrlic.pipeline.params import load_params, stage_params

    return stage_params(stage, load_params(root / "params.yaml"), "smoke")


STAGES = [("base_models", "01_base_models"), ("posttrain", "02_mgda_posttrain"), ("offsets", "03_offset_fitting"),
          ("hyperlatent", "04_hyperlatent_ablation"), ("figures", "05_figures")]


@pytest.fixture(scope="module")
def smoke_run(root, embedded, tmp_path_factory):
    """Stages 01–04 through papermill on the smoke profile, every output under a temporary folder."""
    from vrlic.pipeline.notebook import run_notebook

    out = tmp_path_factory.mktemp("smoke")
    done = {}
    # relative paths of the stage resolve under the temporary folder
    params = {"root": str(out), "profile": "smoke", "overrides": {"data": {"dir": str(embedded)}}}
    for stage, nb in STAGES:
        done[stage] = run_notebook(root / f"notebooks/{nb}.py", out / f"{nb}.ipynb", params, cwd=root, log_output=False)
    return out, done


def test_stage01_base_models(smoke_run, root):
    out, done = smoke_run
    p = _smoke_params("base_models", root)
    res = json.loads((out / "results/anchors.json").read_text())
    assert set(res["models"]) == set(p["architectures"])
    assert not p["scratch_anchors"] and res["scratch_anchors"] is False  # the default: the base alone
    for arch, r in res["models"].items():
        assert len(r["results"]["bpp"]) == 1 and all(b > 0 for b in r["results"]["bpp"])
    assert not res["bd_vs_jpeg"]  # a BD-rate needs a curve
    assert (out / "results/figures/base_models/anchors_rd.png").stat().st_size > 10_000
    text = done["base_models"].read_text()
    assert '"papermill"' not in text and "execution_count" in text
    # no stage reports a BD-rate against one model: no scratch reference anywhere
    for stage in ("posttrain", "offsets", "hyperlatent"):
        for arch, by in json.loads((out / f"results/{stage}.json").read_text())["models"].items():
            assert all(set(r["bd"]) == {"finetuned"} and not r["bd_rate_vs_anchors"] for r in by.values()), (stage, arch)
    assert json.loads((out / "results/ablation.json").read_text())["references"] == ["finetuned"]


def test_scratch_anchors_are_opt_in(root, embedded, tmp_path):
    """`base_models.scratch_anchors` on (`make scratch`): stage 01 trains the anchor of every λ
    from scratch, the base among them, and reports their curve against JPEG."""
    from vrlic.pipeline.notebook import run_notebook

    p = _smoke_params("base_models", root)
    overrides = {"data": {"dir": str(embedded)}, "architectures": [ARCH], "scratch_anchors": True}
    run_notebook(root / "notebooks/01_base_models.py", tmp_path / "01.ipynb",
                 {"root": str(tmp_path), "profile": "smoke", "overrides": overrides}, cwd=root, log_output=False)
    res = json.loads((tmp_path / "results/anchors.json").read_text())
    assert res["scratch_anchors"] is True and list(res["models"]) == [ARCH]
    assert len(res["models"][ARCH]["results"]["bpp"]) == len(p["lambdas"]) and ARCH in res["bd_vs_jpeg"]
    assert sorted(f.name for f in (tmp_path / "outputs/models/base" / ARCH).glob("*.pth.tar")) == sorted(
        f"lmbda{l:.4f}.pth.tar" for l in p["lambdas"])


def test_stage02_posttrain(smoke_run, root):
    out, _ = smoke_run
    res = json.loads((out / "results/posttrain.json").read_text())
    p = _smoke_params("posttrain", root)
    for arch in p["architectures"]:
        assert set(res["models"][arch]) == set(p["variants"])
        r = res["models"][arch]["mgda"]
        assert "bd_rate_vs_anchors" in r and len(r["results"]["step"]) == 2 * len(p["lambdas"]) - 1
    for f in ("losses", "alpha", "rd", "geometry", "cosines"):
        assert (out / f"results/figures/posttrain/{f}.png").exists()
    k = len(p["lambdas"])
    for arch in p["architectures"]:
        assert len(res["reference_losses"][arch]) == k and all(v > 0 for v in res["reference_losses"][arch])
        g = res["geometry_summary"][arch]["mgda"]
        assert len(g["start"]["grad_norms"]) == k and set(g["end"]["alpha"]) == {"none", "l2", "loss", "loss+"}
        assert abs(sum(g["end"]["alpha"]["loss+"]) - 1) < 1e-6


def test_stage03_offsets(smoke_run):
    out, _ = smoke_run
    res = json.loads((out / "results/offsets.json").read_text())
    for arch, by in res["models"].items():
        on, off = by["offsets"]["results"], by["offsets, switched off"]["results"]
        if arch != "mbt2018":  # mbt2018's context model sees the offset-corrected ŷ
            assert on["bpp"] == off["bpp"], "offsets must not change a single bit"
    assert set(res["models"][next(iter(res["models"]))]) == {"offsets", "decoder", "offsets, switched off"}
    assert (out / "results/figures/offsets/offsets_vs_centroids.png").exists()


def test_stage04_ablation(smoke_run, root):
    import csv

    out, _ = smoke_run
    rows = list(csv.DictReader((out / "results/ablation.csv").open()))
    p = _smoke_params("hyperlatent", root)
    assert {r["arch"] for r in rows} == set(p["architectures"])
    assert {"finetuned_psnr_pchip", "finetuned_msssim_pchip", "mgda", "offsets", "vr_hyper"} <= set(rows[0])
    assert not any(k.startswith(("scratch_", "bd_rate_")) for k in rows[0])  # the base alone: no scratch reference
    assert json.loads((out / "results/hyperlatent.json").read_text())["z_share_percent"]


SWITCHED_OFF = {"moo": "weighted_sum", "offsets": False, "vr_hyper": False}
# the stages a switch's modification first appears in: earlier ones are the full run's, copied
FIRST_STAGE = {"moo": 1, "offsets": 2, "vr_hyper": 3}
ARCH = "bmshj2018-hyperprior"


@pytest.mark.parametrize("switch", list(SWITCHED_OFF))
def test_method_switch_removes_its_modification_everywhere(switch, smoke_run, root, embedded, tmp_path):
    """params.yaml's `method.<switch>` off: no stage trains or uses the modification (every arm's
    record, every model file, the final model), and where the switched-off pipeline's model has the
    configuration of a built-in contrast arm of the full run, the two are the same weights."""
    import torch

    from vrlic.pipeline.method import STAGE_SWITCHES, uses
    from vrlic.pipeline.notebook import run_notebook

    full, _ = smoke_run
    first = FIRST_STAGE[switch]
    keep = ["results/anchors.json", "results/classical.json", "outputs/models/base"]
    keep += {2: ["results/posttrain.json", "outputs/models/posttrain"],
             3: ["results/posttrain.json", "outputs/models/posttrain", "results/offsets.json", "outputs/models/offsets"]
             }.get(first, [])
    for rel in keep:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (full / rel).is_dir() else shutil.copy2)(full / rel, tmp_path / rel)
    overrides = {"data": {"dir": str(embedded)}, "architectures": [ARCH], "method": {switch: SWITCHED_OFF[switch]}}
    for stage, nb in STAGES[first:4]:
        run_notebook(root / f"notebooks/{nb}.py", tmp_path / f"{nb}.ipynb",
                     {"root": str(tmp_path), "profile": "smoke", "overrides": overrides}, cwd=root, log_output=False)
    for stage, _ in STAGES[first:4]:
        rec = json.loads((tmp_path / f"results/{stage}.json").read_text())["params"]
        assert rec["method"][switch] == SWITCHED_OFF[switch]
        if switch in STAGE_SWITCHES[stage]:
            assert all(not uses(s, switch) for s in rec["variants"].values()), (stage, rec["variants"])
        for f in (tmp_path / "outputs/models" / stage / ARCH).glob("*.pth.tar"):
            meta = torch.load(f, map_location="cpu", weights_only=False)
            assert "config" not in meta or not uses(meta["config"], switch), f  # the centroid fit has none
            assert not (switch == "offsets" and f.name == "centroid-fit.pth.tar"), f
    final = json.loads((tmp_path / "results/hyperlatent.json").read_text())["params"]["method_arm"]
    model_file = tmp_path / "outputs/models/hyperlatent" / ARCH / f"{final}.pth.tar"
    meta = torch.load(model_file, map_location="cpu", weights_only=False)
    assert not uses(meta["config"], switch)
    if switch == "vr_hyper":  # the final model is the full run's fixed-z contrast arm: same configuration, same weights
        twin = full / "outputs/models/hyperlatent" / ARCH / "fixed_z.pth.tar"
    else:  # the stage that adds the modification: its method arm is the full run's contrast arm
        stage, arm = {"moo": ("posttrain", "weighted_sum"), "offsets": ("offsets", "decoder")}[switch]
        twin = full / "outputs/models" / stage / ARCH / f"{arm}.pth.tar"
        model_file = tmp_path / "outputs/models" / stage / ARCH / f"{arm}.pth.tar"
        meta = torch.load(model_file, map_location="cpu", weights_only=False)
    other = torch.load(twin, map_location="cpu", weights_only=False)
    assert meta["config"] == other["config"] and meta["fingerprint"] == other["fingerprint"]


def test_dvc_repro_smoke_profile(root, tmp_path, smoke_run):
    proj = copy_project(tmp_path / "proj")
    params_file = proj / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["profile"] = "smoke"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ, VRLIC_ROOT=str(proj))
    env.pop("VRLIC_PROFILE", None)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    subprocess.run(["git", "init", "-q"], cwd=proj, check=True)
    if not (proj / "data" / "embedded" / "manifest.json").exists():
        subprocess.run([sys.executable, "-m", "vrlic.data.embedded", "fetch", "data"], cwd=proj, check=True, env=env)
    r = subprocess.run(["dvc", "repro"], cwd=proj, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert json.loads((proj / "results/anchors.json").read_text())["profile"] == "smoke"
    assert (proj / "results/ablation.csv").exists()
    st = subprocess.run(["dvc", "status", "-q"], cwd=proj, env=env)
    assert st.returncode == 0, "pipeline is stale right after dvc repro"

    # Provenance scoped to what can change a number: an edit to a drawing function re-runs stage 05
    # alone; an edit to the training loop re-runs all five stages.
    def stale() -> set[str]:
        r = subprocess.run(["dvc", "status", "--json"], cwd=proj, env=env, capture_output=True, text=True, check=True)
        return set(json.loads(r.stdout or "{}"))

    for edited, expected in (("vrlic/report/figures.py", {"figures"}),
                             ("vrlic/training/train.py", {"base_models", "posttrain", "offsets", "hyperlatent", "figures"})):
        f = proj / edited
        before = f.read_text()
        f.write_text(before + "\n# an edit\n")
        try:
            assert stale() == expected, edited
        finally:
            f.write_text(before)
    assert stale() == set()
    # Bit-identical reruns: the papermill run of the fixture and this `dvc repro` are two
    # independent runs of the same code and parameters; every results file must match byte for byte
    # (timings live in results/timings/, which is not compared).
    out, _ = smoke_run
    compared = sorted(p.relative_to(out) for p in (out / "results").rglob("*") if p.is_file()
                      and p.suffix in (".json", ".csv", ".png") and "timings" not in p.parts)
    assert len(compared) >= 6
    differ = [str(p) for p in compared if (out / p).read_bytes() != (proj / p).read_bytes()]
    assert not differ, f"results differ between two identical runs: {differ}"
    # the models too, byte for byte (dvc.lock records their folders' hashes; the wall times beside
    # them are excluded from those hashes by .dvcignore)
    models = sorted(p.relative_to(out) for p in (out / "outputs/models").rglob("*")
                    if p.is_file() and not p.name.endswith(".seconds.json") and p.name != ".gitignore")
    assert len(models) >= 10 and any(p.name.endswith(".seconds.json") for p in (out / "outputs/models").rglob("*"))
    differ = [str(p) for p in models if (out / p).read_bytes() != (proj / p).read_bytes()]
    assert not differ, f"model files differ between two identical runs: {differ}"

    # The solver study on the same project (seed 0 only on smoke): every solver lands in the table,
    # the two that stage 02 trained are reused, and stage 05 draws it.
    r = subprocess.run([sys.executable, "-m", "vrlic.study.solver_study", "--jobs", "1"], cwd=proj, env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    study = json.loads((proj / "results/solvers.json").read_text())
    p = _smoke_params("solvers", root)
    assert {(x["arch"], x["solver"]) for x in study["rows"]} == {(a, n) for a in p["architectures"] for n in p["variants"]}
    assert not (proj / "outputs/solvers/seed0" / p["architectures"][0] / "mgda.pth.tar").exists()  # reused
    assert {e["verdict"] for e in study["summary"]} <= {"baseline", "better", "worse", "no difference", "undefined"}
    r = subprocess.run(["dvc", "repro", "-f", "-s", "figures"], cwd=proj, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (proj / "results/figures/figures/solvers.png").exists()

    # make noise's paired contrast spread, with a copy of this run standing in for seed 1: every
    # direct contrast is recomputed from each seed's own curves, so identical runs spread by 0
    from vrlic.study.noise import contrast_spread
    from vrlic.pipeline.params import load_params

    paths = load_params(proj / "params.yaml")["paths"]
    for key in ("posttrain", "offsets", "hyperlatent"):
        dst = proj / "outputs/noise/seed1" / paths[key]
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(proj / paths[key], dst)
    cs = contrast_spread(proj, paths, [1])
    finite = [v for v in cs.values() if all(math.isfinite(x) for x in v["values"].values())]
    assert finite and all(v["spread"] == 0 and set(v["values"]) == {"0", "1"} for v in finite)
