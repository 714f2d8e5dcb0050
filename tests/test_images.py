"""Image files of every common layout load as a researcher expects, and bad files fail naming the file."""
from __future__ import annotations

import shutil
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from vrlic.codec.imageio import ImageReadError, describe_conversion, list_images, load_image

RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 256, (6, 9, 3), dtype=np.uint8)


def _png16(path, arr: np.ndarray) -> None:
    """A 16-bit PNG (grey, grey+alpha, RGB or RGBA by the channel count), written by hand: Pillow
    cannot write 16-bit colour."""
    h, w, c = arr.shape
    raw = b"".join(b"\0" + arr[i].astype(">u2").tobytes() for i in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _as_uint8(x: torch.Tensor) -> np.ndarray:
    return x.mul(255).round().byte().permute(1, 2, 0).numpy()


def test_rgb_png_is_unchanged_and_unreported(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "a.png")
    notes: list[str] = []
    x = load_image(tmp_path / "a.png", report=notes)
    assert notes == [] and describe_conversion(tmp_path / "a.png") == ""
    assert np.array_equal(_as_uint8(x), RGB)


def test_grey_is_replicated(tmp_path):
    Image.fromarray(RGB[..., 0]).save(tmp_path / "g.png")
    notes: list[str] = []
    x = _as_uint8(load_image(tmp_path / "g.png", report=notes))
    assert all(np.array_equal(x[..., c], RGB[..., 0]) for c in range(3))
    assert notes == ["greyscale replicated to RGB"]


def test_alpha_is_composited_on_white(tmp_path):
    alpha = RNG.integers(0, 256, (6, 9), dtype=np.uint8)
    alpha[0, 0], alpha[0, 1] = 0, 255
    Image.fromarray(np.dstack([RGB, alpha]), "RGBA").save(tmp_path / "rgba.png")
    x = _as_uint8(load_image(tmp_path / "rgba.png")).astype(int)
    a = alpha[..., None] / 255.0
    expect = np.rint(RGB * a + 255 * (1 - a))
    assert np.abs(x - expect).max() <= 1
    assert (x[0, 0] == 255).all() and (x[0, 1] == RGB[0, 1]).all()  # transparent: white; opaque: kept
    assert describe_conversion(tmp_path / "rgba.png") == "RGBA: alpha composited on white"
    # grey + alpha
    Image.fromarray(np.dstack([RGB[..., 0], alpha]), "LA").save(tmp_path / "la.png")
    y = _as_uint8(load_image(tmp_path / "la.png")).astype(int)
    assert (y[0, 0] == 255).all() and (y[0, 1] == RGB[0, 1, 0]).all()
    assert describe_conversion(tmp_path / "la.png") == "greyscale+alpha: alpha composited on white"
    # an alpha channel that is opaque everywhere is just dropped
    Image.fromarray(np.dstack([RGB, np.full((6, 9), 255, np.uint8)]), "RGBA").save(tmp_path / "opaque.png")
    assert np.array_equal(_as_uint8(load_image(tmp_path / "opaque.png")), RGB)
    assert "opaque alpha channel dropped" in describe_conversion(tmp_path / "opaque.png")


def test_palette_with_and_without_transparency(tmp_path):
    pal = Image.fromarray(RGB).quantize(8)
    pal.save(tmp_path / "p.png")
    assert np.array_equal(_as_uint8(load_image(tmp_path / "p.png")), np.asarray(pal.convert("RGB")))
    assert describe_conversion(tmp_path / "p.png") == "palette expanded to RGB"
    idx = np.asarray(pal)
    pal.save(tmp_path / "pt.png", transparency=int(idx[0, 0]))
    x = _as_uint8(load_image(tmp_path / "pt.png"))
    assert (x[idx == idx[0, 0]] == 255).all()  # the transparent colour becomes white
    assert describe_conversion(tmp_path / "pt.png") == "palette with transparency: alpha composited on white"


def test_16_bit_is_scaled_not_clipped(tmp_path):
    v = np.array([[0, 257, 32896, 65535, 1000, 60000]], dtype=np.uint16)
    _png16(tmp_path / "g16.png", v[..., None])
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    x = _as_uint8(load_image(tmp_path / "g16.png"))
    assert x[0, :, 0].tolist() == [0, 1, 128, 255, 4, 233]  # round(v·255/65535)
    assert describe_conversion(tmp_path / "g16.png") == "16-bit greyscale scaled to 8 bit, replicated to RGB"
    rgb16 = RNG.integers(0, 65536, (4, 5, 3), dtype=np.uint16)
    _png16(tmp_path / "rgb16.png", rgb16)
    y = _as_uint8(load_image(tmp_path / "rgb16.png")).astype(int)
    assert np.abs(y - rgb16 / 257).max() <= 1  # Pillow's high byte: within one level of v·255/65535
    assert describe_conversion(tmp_path / "rgb16.png") == "16 bit per channel reduced to 8 bit"


def test_jpeg_and_exif_orientation(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "a.jpg", quality=95)
    assert load_image(tmp_path / "a.jpg").shape == (3, 6, 9) and describe_conversion(tmp_path / "a.jpg") == ""
    im = Image.fromarray(RGB)
    exif = im.getexif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90° clockwise
    im.save(tmp_path / "r.jpg", exif=exif, quality=95)
    notes: list[str] = []
    x = load_image(tmp_path / "r.jpg", report=notes)
    assert x.shape == (3, 9, 6) and notes == ["EXIF orientation 6 applied"]
    plain = load_image(tmp_path / "a.jpg")  # the same pixels without the tag
    assert torch.equal(x, torch.rot90(plain, k=-1, dims=(1, 2)))  # 90° clockwise


def test_bad_image_files_name_the_file(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match="bad.png: not a readable image"):
        load_image(tmp_path / "bad.png")
    Image.fromarray(RGB).save(tmp_path / "cut.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "cut.png").read_bytes()[:60])  # header fine, data cut
    with pytest.raises(ImageReadError, match="cut.png"):
        load_image(tmp_path / "cut.png")
    assert issubclass(ImageReadError, ValueError)


def test_dataset_folder_rules(tmp_path, embedded):
    # the embedded folder (PNGs + manifest.json) lists as before
    files = list_images(embedded)
    assert files and all(p.suffix == ".png" for p in files)
    d = tmp_path / "set"
    d.mkdir()
    shutil.copy(files[0], d / "a.png")
    (d / "manifest.json").write_text("{}")  # sidecars, hidden files and sub-folders are ignored
    (d / "notes.txt").write_text("x")
    (d / ".DS_Store").write_bytes(b"\0")
    (d / "sub").mkdir()
    assert list_images(d) == [d / "a.png"]
    (d / "photo.heic").write_bytes(b"\0" * 10)  # any other file is an error that names it
    with pytest.raises(ImageReadError, match="photo.heic: not an image file"):
        list_images(d)
    assert list_images(d, ["a"]) == [d / "a.png"]  # named images only look at those
    (d / "photo.heic").unlink()
    (d / "b.jpg").write_text("this is text")  # an image suffix that does not parse
    with pytest.raises(ImageReadError, match="b.jpg: not a readable image"):
        list_images(d)
    with pytest.raises(ImageReadError, match="b.jpg"):
        list_images(d, ["b"])


def test_cli_encode_reports_the_conversion(tmp_path, capsys):
    from vrlic.cli import main
    from vrlic.codec.models import save_model
    from vrlic.codec.vbr import build_vr_model

    torch.manual_seed(0)
    m = build_vr_model("bmshj2018-hyperprior", 8, 8, lambdas=[0.0067, 0.18]).eval()
    save_model(m, "bmshj2018-hyperprior", tmp_path / "m.pth.tar")
    Image.fromarray(RGB[..., 0]).save(tmp_path / "g.png")
    assert main(["encode", str(tmp_path / "m.pth.tar"), str(tmp_path / "g.png"), "-o", str(tmp_path / "g.vrlc"),
                 "--step", "2"]) == 0
    err = capsys.readouterr().err
    assert "g.png: converted to 8-bit RGB: greyscale replicated to RGB" in err
