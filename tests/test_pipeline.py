"""The notebooks through papermill, and one `dvc repro` of the smoke profile, in temporary copies."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from conftest import copy_project

pytestmark = pytest.mark.slow


def _smoke_params(stage, root):
    from vrlic.params import load_params, stage_params

    return stage_params(stage, load_params(root / "params.yaml"), "smoke")


def test_stage01_notebook_on_smoke_profile(root, embedded, tmp_path):
    from vrlic.notebook import run_notebook

    p = _smoke_params("base_models", root)
    p["data"] = dict(p["data"], dir=str(embedded))
    for key in ("out_dir", "log_dir", "results", "figure"):
        p[key] = str(tmp_path / p[key])
    out = run_notebook(root / "notebooks/01_base_models.py", tmp_path / "01.ipynb", p, cwd=root, log_output=False)
    res = json.loads((tmp_path / "results/anchors.json").read_text())
    assert set(res["models"]) == set(p["architectures"])
    for arch, r in res["models"].items():
        assert len(r["results"]["bpp"]) == len(p["lambdas"])
        assert all(b > 0 for b in r["results"]["bpp"])
    assert (tmp_path / "results/figures/anchors_rd.png").stat().st_size > 10_000
    text = out.read_text()
    assert '"papermill"' not in text and "execution_count" in text


def test_dvc_repro_smoke_profile(root, tmp_path):
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
        subprocess.run([sys.executable, "-m", "vrlic.data", "fetch", "data"], cwd=proj, check=True, env=env)
    r = subprocess.run(["dvc", "repro"], cwd=proj, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((proj / "results/anchors.json").read_text())
    assert res["profile"] == "smoke"
    st = subprocess.run(["dvc", "status", "-q"], cwd=proj, env=env)
    assert st.returncode == 0, "pipeline is stale right after dvc repro"
