import json

import pytest
import torch

from vrlic.data.datasets import resolve_split

from vrlic.data.embedded import fetch_embedded, verify_manifest

from vrlic.data.sampling import CropSampler
from vrlic.codec.imageio import list_images, load_image, save_image


def test_fetch_is_deterministic_and_manifest_matches(tmp_path):
    a = fetch_embedded(tmp_path / "a", ["chelsea", "china"])
    b = fetch_embedded(tmp_path / "b", ["chelsea", "china"])
    ma = json.loads((a / "manifest.json").read_text())
    mb = json.loads((b / "manifest.json").read_text())
    assert ma == mb
    assert [e["name"] for e in verify_manifest(a)] == ["chelsea", "china"]
    e = ma["images"][0]
    assert (e["width"], e["height"]) == (451, 300)


def test_manifest_detects_tampering(tmp_path):
    folder = fetch_embedded(tmp_path, ["chelsea"])
    png = folder / "chelsea.png"
    data = bytearray(png.read_bytes())
    data[100] ^= 0xFF
    png.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match the manifest"):
        verify_manifest(folder)


def test_unknown_image_and_missing_folder(tmp_path):
    with pytest.raises(KeyError, match="unknown embedded image"):
        fetch_embedded(tmp_path, ["nope"])
    with pytest.raises(FileNotFoundError, match="manifest.json is missing"):
        verify_manifest(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_images(tmp_path / "absent")


def test_split_of_the_params(embedded, root):
    from vrlic.pipeline.params import load_params, stage_params

    data = stage_params("base_models", load_params(root / "params.yaml"), "mini")["data"]
    train, val = resolve_split({**data, "dir": str(embedded)}, root)
    assert {p.stem for p in val} == set(data["val"])
    assert not {p.stem for p in train} & {p.stem for p in val}, "train and validation images overlap"


def test_crop_sampler_is_reproducible_per_step(embedded):
    s = CropSampler.from_files(list_images(embedded, ["chelsea", "rocket"]), crop=64, batch_size=3, seed=1)
    assert s.batch(5).shape == (3, 3, 64, 64)
    assert torch.equal(s.batch(5), s.batch(5))
    assert not torch.equal(s.batch(5), s.batch(6))
    with pytest.raises(ValueError, match="larger than"):
        CropSampler([torch.zeros(3, 32, 32)], crop=64, batch_size=1)


def test_texture_candidates_prefer_textured_crops(embedded):
    from vrlic.data.sampling import texture

    files = list_images(embedded, ["rocket", "coffee"])
    uniform = CropSampler.from_files(files, crop=64, batch_size=16, seed=2)
    picky = CropSampler.from_files(files, crop=64, batch_size=16, seed=2, candidates=4)
    assert torch.equal(picky.batch(3), picky.batch(3))
    mean = lambda s: sum(texture(x) for x in s.batch(3)) / 16  # noqa: E731
    assert mean(picky) > 1.5 * mean(uniform)
    flat = torch.zeros(3, 64, 64)
    assert texture(flat) == 0.0 and texture(torch.rand(3, 64, 64)) > 0.3
    with pytest.raises(ValueError, match="candidates"):
        CropSampler([flat], crop=64, batch_size=1, candidates=0)


def test_torch_save_gives_the_same_bytes_wherever_it_writes(tmp_path):
    from vrlic.infra.atomic import torch_save

    obj = {"w": torch.arange(6.0), "meta": {"iter": 3}}
    torch_save(obj, tmp_path / "a.pth.tar")
    torch_save(obj, tmp_path / "sub" / "b.pth.tar")
    assert (tmp_path / "a.pth.tar").read_bytes() == (tmp_path / "sub" / "b.pth.tar").read_bytes()
    assert torch.equal(torch.load(tmp_path / "a.pth.tar")["w"], obj["w"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pth.tar", "sub"]  # no temporary left


def test_image_roundtrip_and_bad_file(tmp_path):
    x = torch.rand(3, 17, 23)
    save_image(x, tmp_path / "x.png")
    y = load_image(tmp_path / "x.png")
    assert torch.allclose(x, y, atol=0.5 / 255 + 1e-6)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="not a readable image"):
        load_image(tmp_path / "bad.png")


def test_sampler_spec_rebuilds_the_same_batches(embedded):
    from vrlic.data.sampling import sampler_from_spec, sampler_spec

    files = list_images(embedded, ["chelsea", "rocket"])
    s = CropSampler.from_files(files, crop=32, batch_size=2, seed=5, candidates=2)
    spec = sampler_spec(s)
    assert spec["files"] == [str(f) for f in files]
    assert torch.equal(sampler_from_spec(spec).batch(7), s.batch(7))
    with pytest.raises(ValueError, match="not built from files"):
        sampler_spec(CropSampler([torch.rand(3, 40, 40)], crop=32, batch_size=1))
