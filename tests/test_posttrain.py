import pytest
import torch

from vrlic.data import CropSampler
from vrlic.imageio import list_images
from vrlic.models import build_model
from vrlic.posttrain import PostTrainConfig, objectives, posttrain, trained_parameters
from vrlic.interop import from_single_rate

LAMBDAS = [0.0067, 0.05, 0.18]


class FixedBatch(CropSampler):
    def batch(self, step):  # the same batch at every step
        return super().batch(0)


@pytest.fixture(scope="module")
def sampler(embedded):
    return FixedBatch.from_files(list_images(embedded, ["chelsea", "flower"]), crop=64, batch_size=4, seed=0)


def _base():
    torch.manual_seed(0)
    return build_model("mbt2018-mean", 16, 16)


def _losses(model, x):
    torch.manual_seed(123)  # same quantization noise for the before/after comparison
    model.train()
    with torch.no_grad():
        losses, _ = objectives(model, x, range(len(LAMBDAS)), LAMBDAS)
    return [float(l["loss"]) for l in losses]


@pytest.mark.parametrize("grads", ["params", "representation"])
def test_mgda_iterations_decrease_every_objective(sampler, tmp_path, grads):
    model = from_single_rate(_base(), "mbt2018-mean", lambdas=LAMBDAS, vr_hyper=False, offsets=False)
    x = sampler.batch(0)
    before = _losses(model, x)
    cfg = PostTrainConfig("mbt2018-mean", LAMBDAS, iters=5, moo="mgda", mgda_grads=grads, lr=1e-3,
                          normalization="loss+", ckpt_every=100)
    state = posttrain(model, cfg, sampler, tmp_path / "p.pt", progress=False)
    after = _losses(state.model, x)
    assert all(a < b for a, b in zip(after, before)), (before, after)


@pytest.mark.parametrize("moo", ["weighted_sum", "random"])
def test_baselines_run_through_the_same_loop(sampler, tmp_path, moo):
    model = from_single_rate(_base(), "mbt2018-mean", lambdas=LAMBDAS, vr_hyper=True, offsets=True, train_gains=True)
    g0 = model.Gain.detach().clone()
    cfg = PostTrainConfig("mbt2018-mean", LAMBDAS, iters=3, moo=moo, lr=1e-3, train_gains=True, offsets=True,
                          vr_hyper=True, ckpt_every=100)
    log = []
    state = posttrain(model, cfg, sampler, tmp_path / "p.pt", progress=False)
    assert state.iter == 3
    assert not torch.equal(g0, state.model.Gain.detach()), "train_gains: the step table should move"


def test_trained_parameter_selection():
    model = from_single_rate(_base(), "mbt2018-mean", lambdas=LAMBDAS, vr_hyper=True, offsets=True)
    names = [n for n, _ in trained_parameters(model, "offsets")]
    assert names and all(n.startswith("QuantABCD") for n in names)
    assert "Gain" not in [n for n, _ in trained_parameters(model, "all")]  # fixed table by default
    assert not any(n.endswith("quantiles") for n, _ in trained_parameters(model, "all"))
    with pytest.raises(ValueError):
        PostTrainConfig("mbt2018-mean", LAMBDAS, iters=1, moo="nsga2")
