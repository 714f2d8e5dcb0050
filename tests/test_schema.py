"""params.yaml validation: a dozen typical mistakes, each refused with a message naming the key."""
import copy
import subprocess
import sys
import time

import pytest
import yaml

from vrlic.pipeline.params import load_params
from vrlic.pipeline.schema import ARCHITECTURE_NAMES, PostTrainSettings, ParamsError, validate


@pytest.fixture(scope="module")
def params(root):
    return load_params(root / "params.yaml")


def test_the_shipped_file_is_valid(params, root):
    validate(params, root)


def _set(d, dotted, value):
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


def _del(d, dotted):
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d[k]
    del d[keys[-1]]


MISTAKES = [
    ("typo in a key", lambda p: _set(p, "base_models.itres", 10), "itres"),
    ("string for a number", lambda p: _set(p, "base_models.lr", "fast"), "lr"),
    ("negative λ", lambda p: _set(p, "profiles.mini.lambdas", [-0.001, 0.0067]), "positive"),
    ("unsorted λ", lambda p: _set(p, "profiles.mini.lambdas", [0.0067, 0.0018]), "increasing"),
    ("unknown architecture", lambda p: _set(p, "profiles.mini.architectures", ["bmshj2019"]), "architectures"),
    ("unknown profile", lambda p: _set(p, "profile", "fast"), "profile"),
    ("missing training folder", lambda p: (_set(p, "profiles.mini.data", {"source": "folders", "val_dir": "x"})), "train_dir"),
    ("training folder that does not exist", lambda p: _set(p, "profiles.mini.data",
                                                              {"source": "folders", "train_dir": "nope/", "val_dir": "nope/"}), "does not exist"),
    ("crop not a multiple of 64", lambda p: _set(p, "profiles.mini.base_models", {"crop": 100}), "crop"),
    ("zero iterations", lambda p: _set(p, "profiles.mini.posttrain", {"common": {"iters": 0}}), "iters"),
    ("unknown solver", lambda p: _set(p, "posttrain.variants.mgda.moo", "nsga2"), "moo"),
    ("unknown normalisation", lambda p: _set(p, "posttrain.common.normalization", "l3"), "normalization"),
    ("a path missing", lambda p: _del(p, "paths.anchors"), "anchors"),
    ("a stage key typo in a profile", lambda p: _set(p, "profiles.mini.postrain", {}), "postrain"),
    ("learning rate out of range", lambda p: _set(p, "profiles.mini.base_models", {"lr": 5}), "lr"),
]


@pytest.mark.parametrize("what,mutate,needle", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_mistakes_are_refused_naming_the_key(params, root, what, mutate, needle):
    p = copy.deepcopy(params)
    mutate(p)
    with pytest.raises(ParamsError, match=needle):
        validate(p, root)


def test_schema_knows_the_architectures_and_the_posttrain_fields():
    from dataclasses import fields

    from vrlic.codec.architectures import ARCHITECTURES
    from vrlic.training.posttrain import PostTrainConfig

    assert set(ARCHITECTURE_NAMES) == set(ARCHITECTURES)
    # crop_candidates is the data section's (one sampler per stage), not a variant's
    settable = {f.name for f in fields(PostTrainConfig)} - {"arch", "lambdas", "init", "extra", "crop_candidates"}
    assert set(PostTrainSettings.model_fields) == settable


def test_dvc_stage_command_stops_fast_on_a_bad_value(root, tmp_path):
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["base_models"]["iters"] = "many"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "vrlic.pipeline.notebook", "notebooks/01_base_models.py", "--stage", "base_models"],
                       cwd=tmp_path, capture_output=True, text=True, env={"VRLIC_ROOT": str(tmp_path), "PATH": ""})
    assert r.returncode == 2 and "iters" in r.stderr and "many" in r.stderr, r.stderr
    assert time.perf_counter() - t0 < 10  # includes the interpreter start; no kernel is started
