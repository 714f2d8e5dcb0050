"""The README's commands on a fresh clone, timed: what a new user waits for.

    python benchmarks/fresh_clone.py [ci] [repro] [verify] [--rev HEAD] [--keep]

Clones ``--rev`` of this repository into a temporary folder (with ``../shared`` linked beside it,
as CI has it), then runs, in order, each target asked for: ``ci`` (``bash .ci/run``: the set-up and
``make test``), ``repro`` (``make repro``: the set-up too when ``ci`` did not run first) and
``verify`` (``make verify``, after ``repro``). Prints one line per target with its wall time and
exit code, then a Markdown table with the machine, for docs/benchmarks.md and the README. The
pytest summary line and ``--durations`` table of ``ci`` are printed too. Nothing else may run on
the machine meanwhile.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vrlic.infra.provenance import machine  # noqa: E402

COMMANDS = {"ci": ["bash", ".ci/run"], "repro": ["make", "repro"], "verify": ["make", "verify"]}


def _minutes(s: float) -> str:
    return f"{int(s // 60)} min {int(round(s % 60)):02d} s"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("targets", nargs="*", default=["ci"], choices=list(COMMANDS))
    ap.add_argument("--rev", default="HEAD")
    ap.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="vrlic-fresh-"))
    clone = work / "r"
    rev = subprocess.run(["git", "rev-parse", "--short", args.rev], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "checkout", "-q", rev], cwd=clone, check=True)
    if (ROOT.parent / "shared").exists():
        (work / "shared").symlink_to((ROOT.parent / "shared").resolve())
    rows = []
    try:
        for target in args.targets:
            t = time.monotonic()
            r = subprocess.run(COMMANDS[target], cwd=clone, capture_output=True, text=True)
            wall = time.monotonic() - t
            out = r.stdout + r.stderr
            (work / f"{target}.log").write_text(out)
            rows.append((target, wall, r.returncode))
            print(f"{target}: {_minutes(wall)}, exit {r.returncode} (log {work / f'{target}.log'})", flush=True)
            if target == "ci":
                summary = [line for line in out.splitlines() if re.search(r"\d+ (passed|failed)", line)]
                durations = out[out.find("slowest"):].split("\n=")[0] if "slowest" in out else ""
                print("\n".join(summary[-1:]) + "\n" + durations, flush=True)
            if target == "verify":
                print("\n".join(out.splitlines()[-25:]), flush=True)
            if r.returncode != 0 and target != "verify":  # verify's exit code is its verdict
                break
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    m = machine()
    print(f"\nfresh clone of {rev} on {m['cpu']}, {m['cores']} cores\n\n| command | wall time | exit |\n|---|---|---|")
    for target, wall, code in rows:
        print(f"| `{' '.join(COMMANDS[target])}` | {_minutes(wall)} | {code} |")
    return max((c for t, _, c in rows if t != "verify"), default=0)


if __name__ == "__main__":
    sys.exit(main())
