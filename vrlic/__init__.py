"""vrlic: variable-rate learned image compression (Kamisli, Racapé, Choi, DCC 2024), reproduced.

Subpackages by role, each importing only from the layers below it (``tests/test_layers.py``):

    infra     < codec < data < training, measure, pipeline < study, draw < report < cli
    (files, paths, provenance, workers) · (the codec: models, quantization, bitstreams) ·
    (images, samplers, downloads, the zoo) · (training loops, MGDA, offsets) · (RD measurement,
    BD-rates, verdicts) · (params.yaml, the notebook runner) · (anchors, variants, ablation, noise,
    solver study) · (stage figures) · (stage 05: tables, figures, DVC metrics, the results summary).
"""
__version__ = "0.1.0"
