"""The experiments: anchors (scratch and fine-tuned), post-training variants, the ablation grid,
direct contrasts, the seed noise, the solver study, your own model."""
