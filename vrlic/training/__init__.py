"""Training: single-rate training, post-training (modification 1: MGDA and the other solvers in
``mgda`` / ``posttrain``), offset fitting (modification 2: ``offsets``), convergence, diagnostics."""
