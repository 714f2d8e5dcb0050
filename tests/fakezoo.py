"""Pytest fixtures for the fake zoo / Kodak / DIV2K server (``vrlic.testing.fakezoo``), loopback only.

Import the fixtures into a test module (``from fakezoo import fake_zoo, fake_zoo_small``).

* ``fake_zoo``: full-size zoo files (the zoo's exact N/M, 21–123 MB each: ask only for what the
  test needs, ``fake_zoo.add_zoo(arch, qualities)``);
* ``fake_zoo_small``: N and M divided by 16 (same classes and file naming), for end-to-end runs.

Both serve the 24 Kodak names (small PNGs) and a DIV2K-like zip, and set the environment
(``VRLIC_ZOO_URL``, ``VRLIC_ZOO_REGISTRY``, ``VRLIC_KODAK_URL``/``_LOCK``, ``VRLIC_TRAIN_URL``/``_LOCK``,
``VRLIC_CACHE``) so that vrlic's ordinary download functions use them; the zoo files are generated
once per test session.
"""
from __future__ import annotations

import pytest

from vrlic.testing.fakezoo import FakeZoo


@pytest.fixture(scope="session")
def fakezoo_store(tmp_path_factory):
    return tmp_path_factory.mktemp("fakezoo-store")


def _serve(root, store, small, monkeypatch):
    zoo = FakeZoo(root, small=small, store=store).start()
    zoo.add_kodak()
    zoo.add_training_set()
    for k, v in zoo.environ().items():
        monkeypatch.setenv(k, v)
    return zoo


@pytest.fixture()
def fake_zoo(tmp_path, fakezoo_store, monkeypatch):
    zoo = _serve(tmp_path / "fakezoo", fakezoo_store, False, monkeypatch)
    try:
        yield zoo
    finally:
        zoo.stop()


@pytest.fixture()
def fake_zoo_small(tmp_path, fakezoo_store, monkeypatch):
    zoo = _serve(tmp_path / "fakezoo-small", fakezoo_store, True, monkeypatch)
    try:
        yield zoo
    finally:
        zoo.stop()
