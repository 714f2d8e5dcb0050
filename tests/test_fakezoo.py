"""The fake zoo serves what CompressAI's zoo serves, and the hash-table override cannot weaken the real path."""
import hashlib

import pytest
import torch
from fakezoo import fake_zoo, fake_zoo_small, fakezoo_store  # noqa: F401 (fixtures)

from vrlic.data import zoo
from vrlic.data.download import DownloadError

pytestmark = [pytest.mark.filterwarnings("ignore:zoo weights are checked against the override registry"), pytest.mark.usefixtures("one_thread")]


@pytest.mark.parametrize("arch,quality,cls,NM", [
    ("bmshj2018-hyperprior", 1, "ScaleHyperprior", (128, 192)),
    ("mbt2018-mean", 1, "MeanScaleHyperprior", (128, 192)),
    ("mbt2018", 1, "JointAutoregressiveHierarchicalPriors", (192, 192)),
])
def test_full_size_files_load_like_the_zoo(fake_zoo, tmp_path, arch, quality, cls, NM):
    from compressai.zoo.image import cfgs, model_architectures
    from compressai.zoo.pretrained import load_pretrained

    (served,) = fake_zoo.add_zoo(arch, quality)
    raw = torch.load(served, weights_only=True)
    # the published files' format: a bare state dict with the old bottleneck names
    assert "entropy_bottleneck._matrices.0" in raw and "entropy_bottleneck.matrices.0" not in raw
    digest = hashlib.sha256(served.read_bytes()).hexdigest()
    assert served.name == f"{arch}-{quality}-{digest[:8]}.pth.tar"
    # CompressAI's own loader takes it, at the zoo's exact sizes
    ref = model_architectures[arch].from_state_dict(load_pretrained(raw))
    assert (ref.N if hasattr(ref, "N") else None, ref.M) == tuple(cfgs[arch][quality]) == NM
    assert zoo.zoo_channels(quality, arch) == NM
    # and so does vrlic's download path, through the environment's override
    m = zoo.load_zoo_model(arch, quality)
    assert type(m).__name__ == cls and (int(m.N), int(m.M)) == NM
    for k, v in ref.state_dict().items():
        assert torch.equal(v, m.state_dict()[k]), k


def test_zoo_channels_follow_compressai():
    assert zoo.zoo_channels(5, "mbt2018-mean") == (192, 320)
    assert zoo.zoo_channels(4, "mbt2018") == (192, 192)
    assert zoo.zoo_channels(5) == (128, 192) and zoo.zoo_channels(6) == (192, 320)


def test_small_mode_and_registry_parameter(fake_zoo_small, tmp_path, monkeypatch):
    monkeypatch.delenv("VRLIC_ZOO_REGISTRY")
    monkeypatch.delenv("VRLIC_ZOO_URL")
    fake_zoo_small.add_zoo(["bmshj2018-hyperprior", "mbt2018"], [1, 8])
    reg = fake_zoo_small.registry
    m = zoo.load_zoo_model("mbt2018", 8, cache=tmp_path / "c", base_url=fake_zoo_small.zoo_url, registry=reg)
    assert (int(m.N), int(m.M)) == (12, 20)
    # override pins are full SHA-256s, stricter than the published prefixes
    assert zoo.zoo_pin("mbt2018", 8, registry=reg).startswith("sha256:") and len(zoo.zoo_pin("mbt2018", 8, registry=reg)) == 71
    with pytest.raises(KeyError, match="not in the zoo registry override"):
        zoo.zoo_pin("mbt2018-mean", 1, registry=reg)


def test_without_override_the_published_prefixes_apply(fake_zoo_small, tmp_path, monkeypatch):
    monkeypatch.delenv("VRLIC_ZOO_REGISTRY")
    (served,) = fake_zoo_small.add_zoo("bmshj2018-hyperprior", 1)
    assert zoo.zoo_pin("bmshj2018-hyperprior", 1) == "sha256-prefix:7eb97409"
    # a random file served under the real name fails the real prefix check, leaving nothing behind
    real_name = zoo.zoo_filename("bmshj2018-hyperprior", 1)
    served.rename(served.with_name(real_name))
    with pytest.raises(DownloadError, match="does not match the pinned sha256-prefix:7eb97409"):
        zoo.fetch_zoo_weights("bmshj2018-hyperprior", 1, cache=tmp_path / "c")
    assert not any((tmp_path / "c").iterdir())


def test_registry_must_be_consistent(tmp_path):
    bad = tmp_path / "reg.sha256"
    bad.write_text(f"{'ab' * 32}  bmshj2018-hyperprior-1-00000000.pth.tar\n")
    with pytest.raises(ValueError, match="does not carry the first 8 hex digits"):
        zoo.read_registry(bad)
    bad.write_text(f"{'ab' * 32}  cheng2020-1-abababab.pth.tar\n")
    with pytest.raises(KeyError, match="unknown architecture"):
        zoo.read_registry(bad)
    with pytest.raises(FileNotFoundError):
        zoo.zoo_pin("mbt2018", 1, registry=tmp_path / "none")


def test_tampered_zoo_file_is_refused(fake_zoo_small, tmp_path):
    (served,) = fake_zoo_small.add_zoo("mbt2018-mean", 2)
    data = bytearray(served.read_bytes())
    data[-100] ^= 1
    served.unlink()  # a hard link to the session store: replace, do not modify in place
    served.write_bytes(bytes(data))
    with pytest.raises(DownloadError, match="does not match the pinned sha256:"):
        zoo.fetch_zoo_weights("mbt2018-mean", 2, cache=tmp_path / "c")


def test_zoo_anchor_never_reuses_a_model_from_another_zoo(fake_zoo_small, tmp_path, monkeypatch):
    from vrlic.study.anchors import zoo_anchor
    from vrlic.codec.models import load_model

    fake_zoo_small.add_zoo("bmshj2018-hyperprior", 8)
    a = zoo_anchor("bmshj2018-hyperprior", 8, tmp_path / "models")
    model, meta = load_model(a.path)
    assert meta["zoo_file"].startswith("bmshj2018-hyperprior-8-") and meta["quality"] == 8 and int(model.M) == 20
    assert zoo_anchor("bmshj2018-hyperprior", 8, tmp_path / "models").path == a.path  # reused, same zoo file
    # the real zoo names another file: the stored fake model is not taken for it
    monkeypatch.delenv("VRLIC_ZOO_REGISTRY")
    monkeypatch.setenv("VRLIC_ZOO_URL", "http://127.0.0.1:9")
    with pytest.raises(DownloadError, match="could not download"):
        zoo_anchor("bmshj2018-hyperprior", 8, tmp_path / "models", cache=tmp_path / "c")
