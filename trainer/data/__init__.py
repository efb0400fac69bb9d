"""Everything between a table and the arrays or batches a backend trains on, in one direction of travel.

``values`` (whether messages may quote data) <- ``columns`` (what a column holds) <- ``preprocessor``
(the fitted transforms) <- ``prepare`` (a DataFrame in memory: checks, split, statistics, encoding);
``tables`` reads a whole file into a DataFrame. Nothing in this package imports the loop, the
backends or a face.
"""
from __future__ import annotations

from .preprocessor import Preprocessor
from .prepare import MAX_AUTO_CLASSES, MAX_CATEGORIES, PreparedData, infer_task, prepare_data, resolve_columns, windows

__all__ = ["MAX_AUTO_CLASSES", "MAX_CATEGORIES", "PreparedData", "Preprocessor", "infer_task", "prepare_data",
           "resolve_columns", "windows"]
