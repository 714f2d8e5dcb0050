"""The real download path (pooch), against a loopback HTTP server with real SHA-256 pins."""
import hashlib
import http.server
import threading
from functools import partial

import pytest

from vrlic.data.download import DownloadError, fetch


@pytest.fixture()
def server(tmp_path):
    served = tmp_path / "www"
    served.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_fetch_checks_full_hash(server, tmp_path):
    served, url = server
    payload = b"vrlic test payload\n" * 100
    (served / "f.bin").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    cache = tmp_path / "cache"
    path = fetch(f"{url}/f.bin", f"sha256:{digest}", cache=cache, progress=False)
    assert path.read_bytes() == payload
    # cached: served file removed, still returned (and re-verified)
    (served / "f.bin").unlink()
    assert fetch(f"{url}/f.bin", f"sha256:{digest}", cache=cache, progress=False) == path


def test_hash_mismatch_leaves_nothing(server, tmp_path):
    served, url = server
    (served / "g.bin").write_bytes(b"tampered")
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="does not match the pinned"):
        fetch(f"{url}/g.bin", "sha256:" + "0" * 64, cache=cache, progress=False)
    assert list(cache.iterdir()) == []


def test_prefix_pin_as_in_compressai_zoo_names(server, tmp_path):
    served, url = server
    payload = b"weights"
    (served / "m.pth.tar").write_bytes(payload)
    h8 = hashlib.sha256(payload).hexdigest()[:8]
    p = fetch(f"{url}/m.pth.tar", f"sha256-prefix:{h8}", cache=tmp_path / "c", progress=False)
    assert p.read_bytes() == payload
    bad = "ffffffff" if h8 != "ffffffff" else "00000000"
    with pytest.raises(DownloadError):
        fetch(f"{url}/m.pth.tar", f"sha256-prefix:{bad}", fname="m2.pth.tar", cache=tmp_path / "c", progress=False)
    assert not (tmp_path / "c" / "m2.pth.tar").exists()


def test_corrupt_cache_is_refetched(server, tmp_path):
    served, url = server
    payload = b"good bytes"
    (served / "h.bin").write_bytes(payload)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "h.bin").write_bytes(b"half a fi")
    p = fetch(f"{url}/h.bin", "sha256:" + hashlib.sha256(payload).hexdigest(), cache=cache, progress=False)
    assert p.read_bytes() == payload


def test_unreachable_server_is_a_clear_error(tmp_path):
    with pytest.raises(DownloadError, match="could not download"):
        fetch("http://127.0.0.1:9/none.bin", "sha256:" + "0" * 64, cache=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_zoo_names_and_kodak_pins():
    from vrlic.data.datasets import fetch_kodak
    from vrlic.data.zoo import zoo_channels, zoo_filename, zoo_url

    assert zoo_filename("mbt2018-mean", 3) == "mbt2018-mean-3-723404a8.pth.tar"
    assert zoo_url("bmshj2018-hyperprior", 8).endswith("/bmshj2018-hyperprior-8-a583f0cf.pth.tar")
    assert zoo_channels(5) == (128, 192) and zoo_channels(6) == (192, 320)
    with pytest.raises(ValueError):
        zoo_filename("mbt2018", 9)
    with pytest.raises(DownloadError, match="no pinned SHA-256"):
        fetch_kodak(pins_file="/nonexistent")


def test_zoo_download_and_load_from_local_server(server, tmp_path, monkeypatch):
    """The zoo path end to end, with a locally built checkpoint whose hash we pin ourselves."""
    import torch

    import vrlic.data.zoo as zoo
    from vrlic.codec.models import build_model

    served, url = server
    model = build_model("bmshj2018-hyperprior", 8, 8)
    torch.save(model.state_dict(), served / "tmp.pth.tar")
    h8 = hashlib.sha256((served / "tmp.pth.tar").read_bytes()).hexdigest()[:8]
    (served / "tmp.pth.tar").rename(served / f"bmshj2018-hyperprior-1-{h8}.pth.tar")
    import dataclasses

    from vrlic.codec import architectures

    entry = architectures.get("bmshj2018-hyperprior")
    monkeypatch.setitem(architectures.ARCHITECTURES, entry.name,
                        dataclasses.replace(entry, zoo_hash8=(h8, *entry.zoo_hash8[1:])))
    loaded = zoo.load_zoo_model("bmshj2018-hyperprior", 1, cache=tmp_path / "c", base_url=url)
    for k, v in model.state_dict().items():
        if "_cdf" not in k and "_offset" not in k and "_quantized_cdf" not in k:
            assert torch.equal(v, loaded.state_dict()[k]), k
