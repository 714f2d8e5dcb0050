"""Stage 05: the results loaded, the BD-rate tables, the figures, DVC's metrics/plots files and the
generated results summary (docs/results.md)."""
