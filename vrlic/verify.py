"""`make verify`: did this rerun reproduce the committed numbers?

    python -m vrlic.verify [--against REV] [--results results]

Compares every results file in the working tree with the committed one (``git show REV:path``,
default ``HEAD``), number by number, and prints per file how many numbers are identical, how many
differ and by how much. Every BD-rate of ``bd_rates.csv`` and ``bd_contrasts.csv`` is set against
the committed seed spread of its row. It ends with one verdict, also the exit code:

* 0 ``identical``: every number (and every figure's bytes) as committed, stamps aside (a changed
  record of the parameters is listed, and judged by the numbers alone);
* 1 ``reproduced within the seed noise``: every BD-rate moved less than its committed seed spread
  and no verdict of the two tables flipped;
* 2 ``not reproduced``: the list of what moved beyond its spread, or flipped, or has no spread to
  be judged by.

Floating point differs between CPUs: a rerun on another machine is rarely identical; the results
record the machine that computed them (``environment`` in ``results/anchors.json``).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from vrlic.infra.paths import project_root

# what says who computed a number, not the number: never compared
STAMP_KEYS = frozenset({"code_version", "environment", "stage"})
BD_TABLES = {"bd_rates.csv": ("arch", "variant", "reference", "metric"),
             "bd_contrasts.csv": ("arch", "contrast", "metric")}
REL_FLOOR = 1e-3
OUTCOMES = {0: "identical", 1: "reproduced within the seed noise", 2: "not reproduced"}


@dataclass
class FileReport:
    path: str
    identical: int = 0
    differ: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    other: list[str] = field(default_factory=list)  # non-numeric differences, missing keys
    params: list[str] = field(default_factory=list)  # differences in the recorded parameters (reported, not judged)

    def line(self) -> str:
        if not self.differ and not self.other and not self.params:
            return f"{self.path}: {self.identical} numbers identical"
        extra = f"; {len(self.other)} other differences (e.g. {self.other[0]})" if self.other else ""
        if self.params:
            extra += f"; the parameters record differs in {len(self.params)} places (e.g. {self.params[0]})"
        return (f"{self.path}: {self.identical} identical, {self.differ} differ (largest by {self.max_abs:.4g}; "
                f"relative, over numbers ≥ {REL_FLOOR:g}: {self.max_rel:.2%}){extra}")


def _leaves(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k not in STAMP_KEYS:
                yield from _leaves(v, f"{prefix}/{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, f"{prefix}[{i}]")
    else:
        yield prefix or "/", obj


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def compare_values(path: str, new: dict[str, Any], old: dict[str, Any]) -> FileReport:
    """Leaf-by-leaf comparison of two flattened files."""
    rep = FileReport(path)
    for key in sorted(set(new) | set(old)):
        # the recorded parameters say how a number was made, not what it is: a change there is
        # reported, and judged only through the numbers it changed
        sink = rep.params if key.startswith("/params/") else rep.other
        if key not in new or key not in old:
            sink.append(f"{key} {'added' if key in new else 'removed'}")
            continue
        a, b = _number(new[key]), _number(old[key])
        if a is None or b is None:
            if new[key] != old[key]:
                sink.append(f"{key}: {old[key]!r} → {new[key]!r}")
            continue
        if a == b or (math.isnan(a) and math.isnan(b)):
            rep.identical += 1
            continue
        rep.differ += 1
        d = abs(a - b)
        if math.isfinite(d):
            rep.max_abs = max(rep.max_abs, d)
            if abs(b) >= REL_FLOOR:  # relative to a number near zero says nothing
                rep.max_rel = max(rep.max_rel, d / abs(b))
    return rep


def _flatten(path: Path, text: str) -> dict[str, Any]:
    if path.suffix == ".json":
        return dict(_leaves(json.loads(text)))
    rows = list(csv.DictReader(io.StringIO(text)))
    return {f"[{i}]/{k}": v for i, r in enumerate(rows) for k, v in r.items()}


def committed(root: Path, rev: str, rel: str) -> bytes | None:
    """The bytes of ``rel`` at ``rev``; None if it is not there."""
    r = subprocess.run(["git", "show", f"{rev}:{rel}"], cwd=root, capture_output=True)
    return r.stdout if r.returncode == 0 else None


def bd_judgement(name: str, new_text: str, old_text: str) -> list[str]:
    """What did not reproduce in one BD-rate table: a pchip that moved by at least its committed seed
    spread (or has no spread to be judged by), a verdict that flipped, a row that appeared or went."""
    keys = BD_TABLES[name]
    new = {tuple(r[k] for k in keys): r for r in csv.DictReader(io.StringIO(new_text))}
    old = {tuple(r[k] for k in keys): r for r in csv.DictReader(io.StringIO(old_text))}
    problems = []
    for key in sorted(set(new) | set(old)):
        what = f"{name} · {' · '.join(key)}"
        if key not in new or key not in old:
            problems.append(f"{what}: {'new row' if key in new else 'row gone'}")
            continue
        a, b = _number(new[key]["pchip"]), _number(old[key]["pchip"])
        spread = _number(old[key]["seed_spread"])
        if new[key]["verdict"] != old[key]["verdict"]:
            problems.append(f"{what}: verdict {old[key]['verdict']} → {new[key]['verdict']}")
        if a is None or b is None or (math.isnan(a) and math.isnan(b)) or a == b:
            continue
        d = abs(a - b) if math.isfinite(a) and math.isfinite(b) else math.inf
        if spread is None or not math.isfinite(spread):
            problems.append(f"{what}: {b:+.2f} → {a:+.2f} % (no committed seed spread to judge it by)")
        elif d >= spread:
            problems.append(f"{what}: {b:+.2f} → {a:+.2f} % (moved {d:.2f}, seed spread {spread:.2f})")
    return problems


def verify(root: Path, rev: str = "HEAD", results: str = "results") -> tuple[int, list[str]]:
    """(exit code, report lines) of the working tree's results against ``rev``'s."""
    tracked = subprocess.run(["git", "ls-files", "--", results], cwd=root, capture_output=True, text=True,
                             check=True).stdout.split()
    lines, problems, exact = [], [], True
    figures_same = figures_differ = 0
    for rel in sorted(tracked):
        p = root / rel
        if p.suffix == ".png":
            same = p.exists() and p.read_bytes() == committed(root, rev, rel)
            figures_same += same
            figures_differ += not same
            continue
        if p.suffix not in (".json", ".csv"):
            continue
        old = committed(root, rev, rel)
        old_text = old.decode() if old is not None else None
        if old_text is None or not p.exists():
            lines.append(f"{rel}: {'not committed at ' + rev if old_text is None else 'missing here'}")
            exact = False
            continue
        new_text = p.read_text()
        rep = compare_values(rel, _flatten(p, new_text), _flatten(p, old_text))
        lines.append(rep.line())
        exact &= not rep.differ and not rep.other
        if p.name in BD_TABLES and Path(rel).parent == Path(results):
            problems += bd_judgement(p.name, new_text, old_text)
    lines.append(f"figures: {figures_same} identical, {figures_differ} differ (PNG bytes)")
    exact &= figures_differ == 0
    code = 0 if exact else (1 if not problems else 2)
    lines.append(f"verdict: {OUTCOMES[code]}")
    lines += [f"  {p}" for p in problems]
    return code, lines


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vrlic.verify", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--against", default="HEAD", help="the commit whose results are the reference (default HEAD)")
    ap.add_argument("--results", default="results", help="the results folder (default results)")
    args = ap.parse_args(argv)
    code, lines = verify(project_root(), args.against, args.results)
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    sys.exit(main())
