"""Post-training's defaults, in one place: ``PostTrainConfig``, the params.yaml schema and the CLI
read them from here (this module imports nothing, so the schema stays quick)."""
from __future__ import annotations

MOO_CHOICES = ("mgda", "weighted_sum", "random", "cagrad", "loss_balanced")
NORMALIZATIONS = ("none", "l2", "loss", "loss+", "excess")
TRAIN_CHOICES = ("all", "offsets", "decoder", "offsets+decoder", "vr")
OPTIMIZERS = ("adam", "sgd")
WARMUPS = ("weighted_sum", "random")

# every post-training setting that has a default (arch, lambdas and iters have none)
POSTTRAIN = {
    "moo": "mgda",
    "normalization": "loss+",       # Sener & Koltun's loss+ normalisation of the MGDA gradients
    "mgda_grads": "params",         # params | representation (MGDA-UB)
    "weights": None,
    "train": "all",                 # all | offsets | decoder (g_s) | offsets+decoder | vr (the variable-rate modules)
    "train_gains": False,
    "offsets": False,
    "vr_hyper": False,
    "batch_size": 8,
    "crop": 64,
    "crop_candidates": 1,           # the sampler's texture selection (CropSampler.candidates)
    "lr": 1e-4,
    "lr_gain": 1e-3,
    "lr_decay_at": 0.8,
    "aux_lr": 1e-3,
    "clip_max_norm": 1.0,
    "seed": 0,
    "ckpt_every": 50,
    "ref_losses": None,             # L*_k per λ for normalization: excess
    "excess_eps": 0.01,             # excess floor: max(L − L*, excess_eps·L*)
    "cagrad_c": 0.5,                # CAGrad's c (radius of the ball around g0, in units of ‖g0‖)
    "optimizer": "adam",
    "momentum": 0.9,                # sgd only
    "nesterov": False,              # sgd only
    "warmup": "weighted_sum",       # the solver of the first warmup_frac of the iterations
    "warmup_frac": 0.0,
    "alpha_ema": 0.0,               # EMA factor of the mgda/cagrad loss weights over solves (0: off)
    "alpha_every": 1,               # solve for the weights every k-th iteration, reuse them in between
    "diagnostics": False,           # log the full gradient geometry (does not change the result)
}
