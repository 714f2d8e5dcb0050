"""vrlic: variable-rate learned image compression (Kamisli, Racapé, Choi, DCC 2024), reproduced.

Subpackages by role, each importing only from the layers below it (``tests/test_layers.py``):

    infra < codec < data < {training, measure} < pipeline < {study, draw} < report < scaling < cli

    infra     atomic files, project paths, code provenance, workers, devices
    codec     models, variable-step quantization and offsets, variable-rate models, bitstreams
    data      images, training crops, Kodak / DIV2K downloads, the CompressAI zoo
    training  training loops, MGDA and the other solvers, offset fitting, defaults
    measure   RD points with real bitstreams, BD-rates, the verdict rule, JPEG / WebP
    pipeline  params.yaml (profiles, schema), the stages' code and stamps, the notebook runner
    study     anchors, post-training variants, the ablation grid, seed noise, the solver study
    draw      the figures of stages 01–04
    report    stage 05: tables, figures, DVC's metrics and plots, docs/results.md
    scaling   ``make scaling``: the gap against compute (budget, width, base budget, λ range)
"""
__version__ = "0.1.0"
