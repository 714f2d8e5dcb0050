"""The generated results summary (``docs/results.md``): every number in it printed from results."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd


def readme_block(table: pd.DataFrame, profile: str, figure: str) -> str:
    """The README's results section: the headline figure and the PSNR BD-rate table, each entry
    "median [min, max] per image, pchip ± seed spread, overlap, verdict"."""
    t = display_table(table, "PSNR")
    lines = [f"![BD-rates of every variant, {profile} profile]({figure})", "",
             f"BD-rate (PSNR, %, negative = fewer bits; {profile} profile). Each entry: per image median [min, max] · "
             "mean curves (pchip) ± seed spread · curve overlap · verdict.", "",
             "| arch | variant | vs anchors from scratch | vs anchors fine-tuned from the base |", "|---|---|---|---|"]
    for (arch, variant), g in t.groupby(["arch", "variant"], sort=False):
        cells = {}
        for _, r in g.iterrows():
            cells[r["reference"]] = (f"{r['per image: median [min, max]']} · {r['pchip ± seeds']} · "
                                     f"{r['overlap %']} % · {r['verdict']}")
        lines.append(f"| {arch} | {variant} | {cells.get('scratch', '—')} | {cells.get('finetuned', '—')} |")
    return "\n".join(lines)


def update_readme(readme: str | os.PathLike, block: str) -> bool:
    """Replace the text between the README's results markers with ``block``; False if it has none."""
    path = Path(readme)
    if not path.exists():
        return False
    text = path.read_text()
    if README_START not in text or README_END not in text:
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    path.write_text(f"{head}{README_START}\n{block}\n{README_END}{tail}")
    return True
