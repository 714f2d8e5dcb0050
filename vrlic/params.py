"""Reading params.yaml: one section per stage, one sub-section per profile, one switch to choose.

The switch is the top-level ``profile`` key (``mini`` by default; ``smoke`` for tests; ``paper``
for the GPU run). ``VRLIC_PROFILE`` in the environment overrides it, which is how the tests run
the smoke profile without editing the file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from .paths import project_root

PROFILES = ("mini", "smoke", "paper")


def load_params(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Load params.yaml (default: the project's)."""
    path = Path(path) if path is not None else project_root() / "params.yaml"
    with open(path) as f:
        params = yaml.safe_load(f)
    if not isinstance(params, dict):
        raise ValueError(f"{path}: expected a mapping at top level")
    return params


def active_profile(params: dict[str, Any]) -> str:
    """The profile in force: $VRLIC_PROFILE, else params.yaml's ``profile``."""
    profile = os.environ.get("VRLIC_PROFILE") or params.get("profile", "mini")
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return profile


def stage_params(stage: str, params: dict[str, Any] | None = None, profile: str | None = None) -> dict[str, Any]:
    """The parameters of ``stage`` under the active profile, plus ``profile`` and the profile's ``data``."""
    params = load_params() if params is None else params
    profile = profile or active_profile(params)
    if stage not in params:
        raise KeyError(f"params.yaml has no section {stage!r} (sections: {', '.join(params)})")
    section = params[stage]
    if profile not in section:
        raise KeyError(f"params.yaml section {stage!r} has no profile {profile!r}")
    out: dict[str, Any] = {"profile": profile}
    if stage != "data" and "data" in params:
        out["data"] = params["data"][profile]
    out.update(section[profile])
    return out
