"""Figures drawn by stages 01–04 (matplotlib/seaborn), and the shared saving and style."""
