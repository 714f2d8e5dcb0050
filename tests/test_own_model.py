"""A user's own CompressAI checkpoint: loading (any format, any N/M), refusals, and `vrlic posttrain` end to end."""
import json

import pytest
import torch

from vrlic.cli import main
from vrlic.testing.fakezoo import to_zoo_keys, write_training_images
from vrlic.codec.models import build_model, load_checkpoint_base, load_model, save_model

ARCHS = ["bmshj2018-hyperprior", "mbt2018-mean", "mbt2018"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models (conftest.one_thread)


def same_weights(a, b):
    sb = b.state_dict()
    return all(torch.equal(v, sb[k]) for k, v in a.state_dict().items()
               if not k.endswith(("_quantized_cdf", "_offset", "_cdf_length", "scale_table")))


def test_every_checkpoint_format_loads(tmp_path):
    torch.manual_seed(0)
    m = build_model("mbt2018-mean", 8, 12)
    torch.save(m.state_dict(), tmp_path / "raw.pth")  # torch.save(model.state_dict())
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in m.state_dict().items()},  # CompressAI's train example
                "optimizer": {}}, tmp_path / "train.pth.tar")
    torch.save(to_zoo_keys(m.state_dict()), tmp_path / "zoo.pth.tar")  # the zoo's old key names
    save_model(m, "mbt2018-mean", tmp_path / "vrlic.pth.tar")
    for f in ("raw.pth", "train.pth.tar", "zoo.pth.tar", "vrlic.pth.tar"):
        got = load_checkpoint_base(tmp_path / f, "mbt2018-mean")
        assert type(got) is type(m) and (int(got.N), int(got.M)) == (8, 12) and same_weights(m, got), f


@pytest.mark.parametrize("arch", ARCHS)
def test_architecture_is_detected(arch, tmp_path):
    m = build_model(arch, 8, 12)
    torch.save(m.state_dict(), tmp_path / "raw.pth")
    got = load_checkpoint_base(tmp_path / "raw.pth")
    assert type(got) is type(m) and same_weights(m, got)


def test_refusals_say_what_was_expected(tmp_path):
    m = build_model("bmshj2018-hyperprior", 8, 8)
    torch.save(m.state_dict(), tmp_path / "b.pth")
    with pytest.raises(ValueError) as e:
        load_checkpoint_base(tmp_path / "b.pth", "mbt2018")
    msg = str(e.value)
    assert "does not fit a mbt2018 model at N=8, M=8" in msg and "looks like a bmshj2018-hyperprior checkpoint" in msg
    assert "missing 8 parameters" in msg and "entropy_parameters.0.weight (" in msg
    assert "h_s.4.weight: expected 16×12×3×3, got 8×8×3×3" in msg
    state = m.state_dict()
    del state["g_s.6.bias"]
    state["extra.weight"] = torch.zeros(2)
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match=r"missing 1 parameters, e.g. g_s.6.bias \(3\)\n  1 unexpected parameters, e.g. extra.weight \(2\)"):
        load_checkpoint_base(tmp_path / "broken.pth", "bmshj2018-hyperprior")
    torch.save({"state_dict": {"conv.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="cannot tell the architecture"):
        load_checkpoint_base(tmp_path / "other.pth")
    with pytest.raises(ValueError, match="no 'g_a.0.weight'"):
        load_checkpoint_base(tmp_path / "other.pth", "mbt2018-mean")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        load_checkpoint_base(tmp_path / "junk.pth")
    torch.save({"lr": 1.0, "epoch": 3}, tmp_path / "meta.pth")
    with pytest.raises(ValueError, match="neither a state dict"):
        load_checkpoint_base(tmp_path / "meta.pth")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("own")
    torch.manual_seed(0)
    torch.save(build_model("bmshj2018-hyperprior", 8, 8).state_dict(), d / "mine.pth")
    write_training_images(d / "train", n=3, size=72)
    write_training_images(d / "val", n=1, size=64)
    return d


def test_posttrain_cli_end_to_end_with_resume(setup, capsys):
    """The pipeline's schedule, stage by stage (MGDA → offsets → variable-rate z), resumable, with
    the BD-rate against the fine-tuned references."""
    d = setup
    out = d / "out" / "vr.pth.tar"
    args = ["posttrain", str(d / "mine.pth"), "-o", str(out), "--train-dir", str(d / "train"), "--iters", "2", "1", "1",
            "--lambdas", "0.0067", "0.18", "--base-lambda", "0.18", "--batch-size", "2", "--crop", "64",
            "--ckpt-every", "1", "--device", "cpu", "--quiet"]
    assert main(args + ["--stop-after", "1"]) == 0
    ckpt = d / "out" / "vr.stages" / "posttrain" / "bmshj2018-hyperprior" / "mgda.train.pt"
    assert not out.exists() and torch.load(ckpt, weights_only=False)["iter"] == 1
    assert "run the same command again to resume" in capsys.readouterr().out
    assert main(args + ["--reference", "--val-dir", str(d / "val")]) == 0  # resumes at iteration 1
    assert torch.load(ckpt, weights_only=False)["iter"] == 2
    printed = capsys.readouterr().out
    assert "stage posttrain: arm 'mgda'" in printed and "stage offsets: arm 'offsets'" in printed
    assert "stage hyperlatent: arm 'vr_z'" in printed and "BD-rate against the fine-tuned references, PSNR" in printed
    model, meta = load_model(out)
    assert meta["kind"] == "variable-rate" and meta["arch"] == "bmshj2018-hyperprior" and meta["lambdas"] == [0.0067, 0.18]
    assert model.offsets and model.vr_hyper
    assert meta["config"]["moo"] == "mgda" and meta["config"]["offsets"] and meta["config"]["vr_hyper"]
    report = json.loads((d / "out" / "vr.report.json").read_text())
    assert [(s["stage"], s["arm"], s["iters"]) for s in report["stages"]] == [
        ("posttrain", "mgda", 2), ("offsets", "offsets", 1), ("hyperlatent", "vr_z", 1)]
    assert set(report["reference"]["bd"]) == {"psnr-rgb", "ms-ssim-rgb"}
    stage_file = d / "out" / "vr.stages" / "hyperlatent" / "bmshj2018-hyperprior" / "vr_z.pth.tar"
    before = stage_file.stat().st_mtime_ns
    assert main(args) == 0 and stage_file.stat().st_mtime_ns == before  # finished stages are reused, not retrained
    # the interrupted-and-resumed run is the uninterrupted one
    whole = d / "whole" / "vr.pth.tar"
    assert main([a if a != str(out) else str(whole) for a in args]) == 0
    assert load_model(whole)[1]["fingerprint"] == meta["fingerprint"]
    # the result is what `vrlic eval` and `vrlic encode` take
    assert main(["eval", str(out), str(d / "val"), "-o", str(d / "r.json")]) == 0
    assert len(json.loads((d / "r.json").read_text())["results"]["bpp"]) == 2
    assert main(["encode", str(out), str(d / "val" / "0001.png"), "-o", str(d / "a.vrlc"), "--lmbda", "0.18"]) == 0
    assert main(["decode", str(d / "a.vrlc"), "-o", str(d / "a.png"), "--model", str(out)]) == 0


def test_posttrain_switches_follow_the_method(setup):
    """--no-offsets / --no-vr-hyper / --moo: the pipeline's arms without the modification, in every stage."""
    d = setup
    out = d / "abl" / "plain.pth.tar"
    assert main(["posttrain", str(d / "mine.pth"), "-o", str(out), "--train-dir", str(d / "train"),
                 "--iters", "1", "1", "1", "--lambdas", "0.0067", "0.18", "--base-lambda", "0.18", "--no-offsets",
                 "--no-vr-hyper", "--moo", "weighted_sum", "--batch-size", "1", "--crop", "64", "--device", "cpu",
                 "--quiet"]) == 0
    model, meta = load_model(out)
    assert not model.offsets and not model.vr_hyper
    report = json.loads((d / "abl" / "plain.report.json").read_text())
    assert [(s["arm"], s["moo"], s["offsets"], s["vr_hyper"]) for s in report["stages"]] == [
        ("weighted_sum", "weighted_sum", False, False), ("decoder", "weighted_sum", False, False),
        ("fixed_z", "weighted_sum", False, False)]
    assert not (d / "abl" / "plain.stages" / "offsets" / "bmshj2018-hyperprior" / "centroid-fit.pth.tar").exists()


def test_posttrain_refuses_a_base_not_at_the_highest_lambda(setup, tmp_path):
    d = setup
    m = build_model("bmshj2018-hyperprior", 8, 8)
    save_model(m, "bmshj2018-hyperprior", tmp_path / "mid.pth.tar", lmbda=0.0067)
    args = ["-o", str(tmp_path / "x.pth.tar"), "--train-dir", str(d / "train"), "--crop", "64", "--iters", "1", "1", "1",
            "--lambdas", "0.0067", "0.18", "--device", "cpu"]
    with pytest.raises(SystemExit, match=r"trained at λ = 0.0067, not at the highest λ of --lambdas \(0.18\)"):
        main(["posttrain", str(tmp_path / "mid.pth.tar"), *args])
    with pytest.raises(SystemExit, match="does not record the λ.*--base-lambda 0.18"):
        main(["posttrain", str(d / "mine.pth"), *args])
    with pytest.raises(SystemExit, match=r"trained at λ = 0.0067"):
        main(["posttrain", str(d / "mine.pth"), *args, "--base-lambda", "0.0067"])
    assert not (tmp_path / "x.pth.tar").exists()


def test_posttrain_cli_refusals(setup, tmp_path):
    d = setup
    base = ["posttrain", str(d / "mine.pth"), "-o", str(tmp_path / "x.pth.tar"), "--iters", "1", "--device", "cpu",
            "--base-lambda", "0.18"]
    # the training folder is checked before any model is loaded: a missing base is not even looked at
    with pytest.raises(SystemExit, match="training folder .*nope does not exist.*fetch-train"):
        main(["posttrain", str(tmp_path / "no-such-base.pth"), "-o", str(tmp_path / "x.pth.tar"),
              "--train-dir", str(tmp_path / "nope")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="holds 0 images"):
        main(base + ["--train-dir", str(tmp_path / "empty")])
    with pytest.raises(SystemExit, match="smaller than the 256-pixel crop"):
        main(base + ["--train-dir", str(d / "train")])
    with pytest.raises(SystemExit, match="does not fit a mbt2018-mean model at N=8, M=8"):
        main(base + ["--train-dir", str(d / "train"), "--crop", "64", "--arch", "mbt2018-mean"])
    with pytest.raises(SystemExit, match="increasing order"):
        main(base + ["--train-dir", str(d / "train"), "--crop", "64", "--lambdas", "0.18", "0.0067"])
    with pytest.raises(SystemExit, match="base checkpoint .* does not exist"):
        main(["posttrain", str(tmp_path / "no-such-base.pth"), "-o", str(tmp_path / "x.pth.tar"),
              "--train-dir", str(d / "train"), "--crop", "64"])
    with pytest.raises(SystemExit, match="one to 3 values"):
        main(base + ["--train-dir", str(d / "train"), "--crop", "64", "--iters", "1", "1", "1", "1"])
    assert not (tmp_path / "x.pth.tar").exists()
