"""vrlic: variable-rate learned image compression (DCC 2024 reproduction)."""
__version__ = "0.1.0"
