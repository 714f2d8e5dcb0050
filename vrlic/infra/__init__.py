"""Plumbing every layer may use: atomic files, project paths, code provenance, workers, devices."""
