"""Run one pipeline notebook through papermill with its stage's params (the DVC stage command).

    python -m vrlic.pipeline.notebook notebooks/01_base_models.py --stage base_models

The notebook reads its stage's parameters (active profile) from params.yaml itself, so a
cell-by-cell run in Jupyter gives what ``dvc repro`` gives; papermill injects only ``root``. It
always uses the ``python3`` kernel, and scrubs run-to-run metadata so that identical inputs give
identical notebook bytes.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

# The stage commands run the `python` on the PATH: outside the project's environment (e.g. `dvc` called
# as .venv/bin/dvc from a shell that never activated it) that is another interpreter. Say so at once.
_MISSING = [m for m in ("papermill", "jupytext", "jupyter_client", "yaml", "pydantic", "torch", "compressai")
            if importlib.util.find_spec(m) is None]
if _MISSING:
    raise SystemExit(f"error: {', '.join(_MISSING)} not installed for {sys.executable}: the pipeline's stage commands "
                     "run the `python` on your PATH. Enter the project's environment first: `source .venv/bin/activate` "
                     "(`make venv` creates it; `make repro` does both)")

from vrlic.pipeline.params import PROJECT, load_params, stage_params
from vrlic.pipeline.schema import validate
from vrlic.infra.paths import project_root

_VOLATILE_META = ("papermill", "execution")


def scrub(nb) -> None:
    """Remove timestamps, durations, cell ids and the interpreter version from a notebook."""
    nb.metadata.pop("papermill", None)
    nb.metadata.get("language_info", {}).pop("version", None)
    for cell in nb.cells:
        cell.pop("id", None)
        for key in _VOLATILE_META:
            cell.metadata.pop(key, None)
        if cell.get("cell_type") == "code":
            # stderr carries library warnings with this machine's install paths: not part of the record
            cell["outputs"] = [o for o in cell.get("outputs", []) if not (o.get("output_type") == "stream"
                                                                          and o.get("name") == "stderr")]
            for out in cell.get("outputs", []):
                out.get("metadata", {}).pop("execution", None)
    nb.nbformat_minor = 4  # 4.5+ requires the cell ids we just removed


def _local_kernel(sockets: Path) -> type:
    """A kernel manager talking to its kernel over local IPC sockets in ``sockets``, not TCP: the
    kernel is on this machine, and a TCP kernel warns that its traffic is unencrypted."""
    from jupyter_client.manager import AsyncKernelManager

    class LocalKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.transport = "ipc"
            self.ip = str(sockets / "kernel")

    return LocalKernelManager


def run_notebook(source: str | os.PathLike, output: str | os.PathLike, parameters: dict[str, Any],
                 cwd: str | os.PathLike | None = None, log_output: bool = True) -> Path:
    """Execute a jupytext ``.py`` (or ``.ipynb``) notebook with ``parameters``; write ``output``."""
    import jupyter_client
    import jupytext
    import nbformat
    import papermill as pm

    jupyter_client.KernelManager.shutdown_wait_time = 1.0
    # The kernel inherits this environment: fixed thread counts make its numbers independent of
    # the machine's load (MKL would otherwise shrink its thread team when the machine is busy).
    os.environ.setdefault("MKL_DYNAMIC", "FALSE")
    os.environ.setdefault("OMP_DYNAMIC", "FALSE")
    os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
    # Not the user's business: CompressAI's import calls the deprecated torch.jit.script (once per kernel
    # and worker), and pooch's tqdm.auto looks for notebook widgets that a kernel run by papermill never shows.
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"),
                                                          "ignore::FutureWarning:torch.jit._script",
                                                          "ignore:IProgress not found"]))
    source, output = Path(source), Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    nb = jupytext.read(source) if source.suffix == ".py" else nbformat.read(source, as_version=4)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    tmp_in = output.with_name(f".{output.stem}.input.ipynb")
    nbformat.write(nb, tmp_in)
    try:
        with tempfile.TemporaryDirectory(prefix="vrlic-kernel-") as sockets:
            pm.execute_notebook(str(tmp_in), str(output), parameters=parameters, kernel_name="python3",
                                cwd=str(cwd) if cwd else None, log_output=log_output, progress_bar=False,
                                kernel_manager_class=_local_kernel(Path(sockets)))
    finally:
        tmp_in.unlink(missing_ok=True)
    done = nbformat.read(output, as_version=4)
    scrub(done)
    nbformat.write(done, output)
    return output


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vrlic.pipeline.notebook", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="jupytext notebook (notebooks/NN_name.py)")
    ap.add_argument("--stage", required=True, help="the params.yaml stage the notebook runs")
    ap.add_argument("-o", "--output", help="executed notebook (default: outputs/notebooks/NN_name.ipynb)")
    args = ap.parse_args(argv)
    root = project_root()
    params = load_params(root / "params.yaml")
    try:  # fail here, in well under a second, before a kernel (and torch) starts
        validate(params, root)
        stage_params(args.stage, params)
    except (ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    output = Path(args.output) if args.output else Path("outputs/notebooks") / (Path(args.source).stem + ".ipynb")
    # `root = "project"`: the tracked results (a notebook run by hand writes to the scratch folder);
    # the executed copy holds no absolute path and is the same bytes in any clone.
    t0 = time.perf_counter()
    print(f"stage {args.stage} ({params['profile']} profile): {args.source}; progress of long runs below", flush=True)
    run_notebook(root / args.source, root / output, {"root": PROJECT}, cwd=root)
    m, s = divmod(round(time.perf_counter() - t0), 60)
    print(f"stage {args.stage}: done in {m} min {s:02d} s; executed notebook {output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
