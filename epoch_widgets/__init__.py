"""Notebook widgets and the Jupyter server extension for epoch-by-epoch training."""
__version__ = "0.1.0"
