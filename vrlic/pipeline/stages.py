"""The pipeline's stages: the notebook each runs, the subpackages its code comes from (what
``dvc.yaml`` lists as its dependencies, checked against the notebook's imports by the tests), and
the stamp every results file carries."""
from __future__ import annotations

from typing import Any, Mapping

from vrlic.infra.provenance import code_version

# every stage 01–04 runs training, measurement and the study code, and draws its own figures
_STUDY = ("infra", "codec", "data", "training", "measure", "pipeline", "study", "draw")
STAGES = {
    "base_models": ("notebooks/01_base_models.py", _STUDY),
    "posttrain": ("notebooks/02_mgda_posttrain.py", _STUDY),
    "offsets": ("notebooks/03_offset_fitting.py", _STUDY),
    "hyperlatent": ("notebooks/04_hyperlatent_ablation.py", _STUDY),
    "figures": ("notebooks/05_figures.py", (*_STUDY, "report")),  # stage 05 alone uses vrlic.report
}


def stage_code_version(stage: str) -> str:
    """``code_version`` of the subpackages ``stage`` depends on."""
    if stage not in STAGES:
        raise KeyError(f"unknown stage {stage!r} (stages: {', '.join(STAGES)})")
    return code_version(*STAGES[stage][1])


def stamp(stage: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The header every results file carries: stage, profile, the stage's parameters, its code."""
    kept = {k: v for k, v in params.items() if k != "paths"}
    if isinstance(kept.get("data"), Mapping):  # where the images sit is not what produced the numbers
        kept["data"] = {k: v for k, v in kept["data"].items() if k != "dir"}
    return {"stage": stage, "profile": params.get("profile"), "code_version": stage_code_version(stage), "params": kept}
