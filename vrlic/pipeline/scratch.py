"""Stepping through a stage without touching the tracked results: the scratch folder.

An interactive run of a stage notebook (JupyterLab, `make lab`, or `make step`) writes under
``outputs/scratch/<profile>/`` instead of the project: results, figures, models and the generated
document all go there. What the stage reads from the stages before it is copied there from the
project when the project has it for that profile (after `make repro`), and otherwise built there on
the fly by running those stages' notebooks (seconds on the smoke profile).

    python -m vrlic.pipeline.scratch 03 [--profile smoke]      # `make step STAGE=03 PROFILE=smoke`
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Sequence

from vrlic.infra.paths import project_root
from vrlic.pipeline.params import active_profile, load_params
from vrlic.pipeline.stages import STAGES

# what each stage writes that a later stage reads (keys of params.yaml's `paths`)
HANDED_ON = {"base_models": ("base_models", "anchors", "classical"),
             "posttrain": ("posttrain_models", "posttrain"),
             "offsets": ("offsets_models", "offsets"),
             "hyperlatent": ("hyperlatent_models", "hyperlatent", "ablation_json")}


def scratch_folder(profile: str, project: Path | None = None) -> Path:
    return (project or project_root()) / "outputs" / "scratch" / profile


def stage_named(name: str) -> str:
    """A stage from its name, its notebook's number ("03") or its notebook's file name."""
    for stage, (notebook, _) in STAGES.items():
        if name in (stage, Path(notebook).stem, Path(notebook).name, Path(notebook).stem[:2]):
            return stage
    raise ValueError(f"no stage {name!r}: one of {', '.join(STAGES)} or its notebook's number 01–05")


def _run(stage: str, scratch: Path, profile: str, project: Path) -> Path:
    from vrlic.pipeline.notebook import run_notebook

    notebook = STAGES[stage][0]
    return run_notebook(project / notebook, scratch / "notebooks" / (Path(notebook).stem + ".ipynb"),
                        {"root": str(scratch), "profile": profile}, cwd=project, log_output=False)


def prepare(stage: str, profile: str | None = None, project: Path | None = None) -> Path:
    """The scratch folder of ``profile``, holding what ``stage`` reads from the stages before it."""
    project = project or project_root()
    params = load_params(project / "params.yaml")
    profile = profile or active_profile(params)
    paths, scratch = params["paths"], scratch_folder(profile, project)
    data = scratch / paths["data"]
    if not data.exists() and (project / paths["data"]).is_dir():
        # the stages built or stepped through here read the project's images (read-only: a link)
        data.parent.mkdir(parents=True, exist_ok=True)
        data.symlink_to((project / paths["data"]).resolve(), target_is_directory=True)
    for earlier in list(STAGES)[: list(STAGES).index(stage)]:
        needed = [paths[k] for k in HANDED_ON[earlier]]
        if all((scratch / p).exists() for p in needed):
            continue
        if profile == active_profile(params) and all((project / p).exists() for p in needed):
            for p in needed:  # copies, never links: a stage stepped through here must not write into the project
                (scratch / p).parent.mkdir(parents=True, exist_ok=True)
                if (project / p).is_dir():
                    shutil.copytree(project / p, scratch / p, dirs_exist_ok=True)
                else:
                    shutil.copy2(project / p, scratch / p)
            print(f"scratch: copied stage {earlier}'s outputs from the project into {scratch}", flush=True)
        else:
            print(f"scratch: building stage {earlier} ({profile} profile) in {scratch}", flush=True)
            _run(earlier, scratch, profile, project)
    own = {"base_models": paths["base_models"]}.get(stage, paths.get(f"{stage}_models"))
    if own and profile == active_profile(params) and (project / own).is_dir() and not (scratch / own).exists():
        # the stage's own finished models: reused where the run is the same configuration, so stepping
        # through after `make repro` evaluates rather than retrains
        shutil.copytree(project / own, scratch / own)
    return scratch


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vrlic.pipeline.scratch", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", help="the stage to step through: its name or its notebook's number (01–05)")
    ap.add_argument("--profile", help="default: params.yaml's (smoke: seconds per stage)")
    args = ap.parse_args(argv)
    try:
        stage = stage_named(args.stage)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    project = project_root()
    profile = args.profile or active_profile(load_params(project / "params.yaml"))
    scratch = prepare(stage, profile, project)
    out = _run(stage, scratch, profile, project)
    print(f"{out}: stage {stage} on the {profile} profile, every output under {scratch} (nothing tracked was written)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
