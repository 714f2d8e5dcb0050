"""Reading params.yaml: each stage's defaults, deep-merged with the active profile's overrides.

The switch is the top-level ``profile`` key (``mini`` by default; ``smoke`` for tests; ``paper``
for the GPU run). It is read from params.yaml only, so that DVC, which tracks that file, always
knows which profile produced an output (an environment override would be invisible to it).
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from vrlic.infra.paths import project_root
from vrlic.pipeline.method import STAGE_SWITCHES, check_method, resolve_arms

PROFILES = ("mini", "mini3", "smoke", "paper")
PROJECT = "project"  # the notebooks' ``root`` under `dvc repro`: write the project's tracked results
STAGES = ("base_models", "posttrain", "offsets", "hyperlatent", "figures")


def load_params(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Load params.yaml (default: the project's)."""
    path = Path(path) if path is not None else project_root() / "params.yaml"
    with open(path) as f:
        params = yaml.safe_load(f)
    if not isinstance(params, dict):
        raise ValueError(f"{path}: expected a mapping at top level")
    return params


def active_profile(params: Mapping[str, Any]) -> str:
    """The profile in force: params.yaml's ``profile``.

    ``$VRLIC_PROFILE`` is refused rather than obeyed: DVC does not see the environment, so it would
    record one profile's parameters next to another profile's outputs.
    """
    env = os.environ.get("VRLIC_PROFILE")
    profile = params.get("profile", "mini")
    if env and env != profile:
        raise ValueError(f"VRLIC_PROFILE={env} conflicts with params.yaml's profile {profile!r}; DVC cannot see "
                         f"environment variables: run `dvc exp run -S profile={env}` or edit params.yaml instead")
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return profile


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any] | None) -> dict[str, Any]:
    """``base`` with ``override`` applied: nested mappings merge, everything else replaces."""
    out = copy.deepcopy(dict(base))
    for k, v in (override or {}).items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


TRAINING_STAGES = ("base_models", "posttrain", "offsets", "hyperlatent")


def stage_params(stage: str, params: Mapping[str, Any] | None = None, profile: str | None = None,
                 overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The parameters of ``stage`` under ``profile`` (default: the active one).

    Returns the stage's defaults merged with the profile's overrides (and then ``overrides``),
    plus ``profile``, the profile's ``architectures`` and ``lambdas``, its ``data`` section (with
    ``dir`` = ``paths.data``) and ``paths``; the training stages also get ``nproc_per_node``. Stages 02–04 also get ``method`` (the three switches),
    their ``variants`` resolved against it, the ``method_arm`` the next stage continues from and the
    arms ``left_out`` with the reason (``vrlic.pipeline.method.resolve_arms``).
    """
    params = load_params() if params is None else params
    profile = profile or active_profile(params)
    if stage not in params:
        raise KeyError(f"params.yaml has no section {stage!r} (sections: {', '.join(params)})")
    profiles = params.get("profiles", {})
    if profile not in profiles:
        raise KeyError(f"params.yaml has no profile {profile!r} under `profiles` (has: {', '.join(profiles)})")
    prof = profiles[profile]
    out: dict[str, Any] = {"profile": profile, "architectures": list(prof["architectures"]),
                           "lambdas": list(prof["lambdas"]), "paths": dict(params["paths"])}
    out["data"] = {**deep_merge(params["data"], prof.get("data")), "dir": params["paths"]["data"]}
    out.update(deep_merge(params[stage], prof.get(stage)))
    out = deep_merge(out, overrides)
    if stage in TRAINING_STAGES:  # every training run of the stage: data-parallel over this many processes
        out["nproc_per_node"] = int(params.get("nproc_per_node", 1))
    if stage in STAGE_SWITCHES:  # the arms follow the method's switches (vrlic.pipeline.method)
        method = check_method({**(params.get("method") or {}), **(out.pop("method", None) or {})})
        arms, arm, left_out = resolve_arms(stage, method, out["variants"])
        # only the switches the stage has reached: dvc.yaml tracks those alone, so the record of a
        # stage that a later switch did not re-run stays true
        out.update(method={k: method[k] for k in STAGE_SWITCHES[stage]}, variants=arms, method_arm=arm, left_out=left_out)
    return out


def method_arm(record: Mapping[str, Any], what: str = "") -> str:
    """The method's arm recorded by an earlier stage's results file (its ``params.method_arm``)."""
    arm = (record.get("params") or {}).get("method_arm")
    if not arm:
        raise ValueError(f"{what or 'this results file'} records no method arm: it predates params.yaml's `method`; "
                         "re-run its stage (`dvc repro`)")
    return arm
