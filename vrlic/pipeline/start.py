"""What a stage notebook starts from: its output root and its parameters (``notebook_params``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from vrlic.infra.paths import project_root
from vrlic.pipeline.params import PROJECT, deep_merge, load_params, stage_params
from vrlic.pipeline.scratch import prepare


def notebook_params(stage: str, root: str | os.PathLike | None = None, profile: str | None = None,
                    overrides: Mapping[str, Any] | None = None) -> tuple[Path, dict[str, Any]]:
    """What a stage notebook starts from: (output root, the stage's parameters).

    Parameters come from the project's params.yaml. Outputs go under ``root``: ``"project"`` (what
    ``dvc repro`` runs) is the project root; a path is that folder (tests send a whole run to a
    temporary one); None, an interactive run, is the scratch folder ``outputs/scratch/<profile>``,
    with what the stage reads copied or built there (``vrlic.pipeline.scratch``): stepping through
    a notebook never writes a tracked file.
    """
    project = project_root()
    overrides = dict(overrides or {})
    if root is None:
        params = load_params(project / "params.yaml")
        out_root = prepare(stage, profile, project)
        data_dir = str(project / params["paths"]["data"])  # the images stay where they are
        overrides = deep_merge({"data": {"dir": data_dir}}, overrides)
        print(f"interactive run: outputs go to {out_root} (set `root = \"project\"` to write the project's results)")
    else:
        out_root = project if str(root) == PROJECT else Path(root)
    return out_root, stage_params(stage, load_params(project / "params.yaml"), profile, overrides)
