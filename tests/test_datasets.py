"""Kodak and DIV2K held to a trust-on-first-use lock; the training-folder check; the uint8 sampler."""
import json

import numpy as np
import pytest
import torch
from fakezoo import fake_zoo_small, fakezoo_store  # noqa: F401 (fixtures)
from PIL import Image

from vrlic.data.datasets import KODAK_NAMES, check_training_folder, fetch_kodak, fetch_training_set, lock_images, pixels_digest

from vrlic.data.sampling import CompactCropSampler
from vrlic.data.download import DownloadError, LockMismatch, sha256_file


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models (conftest.one_thread)


def test_kodak_first_use_records_then_verifies(fake_zoo_small, tmp_path):
    lock = tmp_path / "kodak.lock.json"
    files = fetch_kodak(cache=tmp_path / "c", lock=lock, progress=False)
    assert [f.name for f in files] == KODAK_NAMES
    rec = json.loads(lock.read_text())
    assert rec["format"] == "vrlic-tofu-lock/1" and set(rec["files"]) == set(KODAK_NAMES)
    e = rec["files"]["kodim04.png"]
    assert e["sha256"] == sha256_file(files[3]) and e["shape"] == [64, 48, 3]
    assert e["pixels_sha256"] == pixels_digest(files[3])["pixels_sha256"]
    assert e["url"].endswith("/kodak/kodim04.png") and e["first_seen"]
    # a later run: same files, lock unchanged
    before = lock.read_bytes()
    assert fetch_kodak(cache=tmp_path / "c", lock=lock, progress=False) == files
    assert lock.read_bytes() == before
    # another machine (fresh cache) holding the committed lock: downloads and verifies
    assert [f.name for f in fetch_kodak(cache=tmp_path / "c2", lock=lock, progress=False)] == KODAK_NAMES


def test_tampered_image_stops_with_both_hashes(fake_zoo_small, tmp_path):
    lock = tmp_path / "kodak.lock.json"
    fetch_kodak(cache=tmp_path / "c", lock=lock, progress=False, names=KODAK_NAMES[:3])
    served = fake_zoo_small.www / "kodak" / "kodim02.png"
    arr = np.asarray(Image.open(served)).copy()
    arr[0, 0, 0] ^= 1
    Image.fromarray(arr).save(served)
    want = json.loads(lock.read_text())["files"]["kodim02.png"]["sha256"]
    with pytest.raises(LockMismatch) as e:
        fetch_kodak(cache=tmp_path / "fresh", lock=lock, progress=False, names=KODAK_NAMES[:3])
    msg = str(e.value)
    assert msg.startswith("kodim02.png: SHA-256 ") and sha256_file(served) in msg and want in msg and str(lock) in msg
    assert not (tmp_path / "fresh" / "kodim02.png").exists()
    print(msg)


def test_corrupt_cache_is_downloaded_again(fake_zoo_small, tmp_path, capsys):
    lock = tmp_path / "kodak.lock.json"
    (f,) = fetch_kodak(cache=tmp_path / "c", lock=lock, progress=False, names=["kodim01.png"])
    good = f.read_bytes()
    f.write_bytes(good[:-10])
    (g,) = fetch_kodak(cache=tmp_path / "c", lock=lock, progress=False, names=["kodim01.png"])
    assert g.read_bytes() == good and "downloading it again" in capsys.readouterr().err


def test_pins_are_optional_but_checked(fake_zoo_small, tmp_path):
    served = fake_zoo_small.www / "kodak" / "kodim01.png"
    pins = tmp_path / "kodak.sha256"
    pins.write_text(f"{'0' * 64}  kodim01.png\n")
    with pytest.raises(DownloadError, match="does not match the pinned"):
        fetch_kodak(cache=tmp_path / "c", lock=tmp_path / "l.json", pins_file=pins, progress=False, names=["kodim01.png"])
    pins.write_text(f"{sha256_file(served)}  kodim01.png\n")
    fetch_kodak(cache=tmp_path / "c", lock=tmp_path / "l.json", pins_file=pins, progress=False, names=["kodim01.png", "kodim02.png"])
    with pytest.raises(DownloadError, match="no pinned SHA-256"):
        fetch_kodak(pins_file=tmp_path / "none")


def test_local_copy_is_held_to_the_lock_by_pixels(tmp_path):
    from vrlic.testing.fakezoo import write_kodak

    files = write_kodak(tmp_path / "kodak", KODAK_NAMES[:2])
    lock_images(files, tmp_path / "l.json")
    # re-encoded, same pixels: accepted
    Image.open(files[0]).save(files[0], compress_level=1)
    lock_images(files, tmp_path / "l.json")
    arr = np.asarray(Image.open(files[1])).copy()
    arr[3, 3, 1] ^= 4
    Image.fromarray(arr).save(files[1])
    with pytest.raises(LockMismatch, match="kodim02.png: pixels_sha256"):
        lock_images(files, tmp_path / "l.json")


def test_training_set_fetch_unpack_and_lock(fake_zoo_small, tmp_path):
    lock = tmp_path / "div2k.lock.json"
    top = fetch_training_set(tmp_path / "data", lock=lock, expected=6, progress=False)
    assert top.name == "DIV2K_train_HR" and len(check_training_folder(top, crop=64)) == 6
    entry = json.loads(lock.read_text())["files"]["DIV2K_train_HR.zip"]
    assert entry["images"] == 6
    assert fetch_training_set(tmp_path / "data", lock=lock, expected=6, progress=False) == top  # no re-unpack
    fake_zoo_small.add_training_set(n=7)  # upstream changed
    with pytest.raises(LockMismatch, match="DIV2K_train_HR.zip: SHA-256"):
        fetch_training_set(tmp_path / "data2", lock=lock, expected=6, cache=tmp_path / "fresh", progress=False)
    with pytest.raises(DownloadError, match="800 expected"):
        fetch_training_set(tmp_path / "data3", lock=tmp_path / "other.json", progress=False)


def test_training_folder_errors(tmp_path):
    from vrlic.testing.fakezoo import write_training_images

    with pytest.raises(FileNotFoundError, match="no training folder given.*fetch-train"):
        check_training_folder(None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_training_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="holds 0 images"):
        check_training_folder(tmp_path / "empty")
    write_training_images(tmp_path / "imgs", n=2, size=48)
    with pytest.raises(ValueError, match="smaller than the 64-pixel crop"):
        check_training_folder(tmp_path / "imgs", crop=64)
    (tmp_path / "imgs" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="unreadable images, e.g. bad.png"):
        check_training_folder(tmp_path / "imgs")


def test_compact_sampler_gives_the_same_batches(tmp_path):
    from vrlic.data.sampling import CropSampler
    from vrlic.testing.fakezoo import write_training_images

    files = write_training_images(tmp_path, n=3, size=80)
    a = CropSampler.from_files(files, crop=32, batch_size=4, seed=3)
    b = CompactCropSampler.from_files(files, crop=32, batch_size=4, seed=3)
    assert b.images[0].dtype == torch.uint8
    for step in (0, 1, 17):
        assert torch.equal(a.batch(step), b.batch(step))
