import pytest

from vrlic.params import PROFILES, active_profile, load_params, stage_params


def test_every_stage_has_every_profile(root):
    params = load_params(root / "params.yaml")
    assert params["profile"] == "mini", "the embedded default must stay the mini profile"
    for section, body in params.items():
        if section == "profile":
            continue
        assert set(body) == set(PROFILES), section


def test_switch_and_override(root, monkeypatch):
    params = load_params(root / "params.yaml")
    monkeypatch.setenv("VRLIC_PROFILE", "smoke")
    assert active_profile(params) == "smoke"
    p = stage_params("base_models", params)
    assert p["profile"] == "smoke" and p["data"] == params["data"]["smoke"]
    monkeypatch.setenv("VRLIC_PROFILE", "fast")
    with pytest.raises(ValueError, match="unknown profile"):
        active_profile(params)
    monkeypatch.delenv("VRLIC_PROFILE")
    with pytest.raises(KeyError, match="no section"):
        stage_params("nope", params)
