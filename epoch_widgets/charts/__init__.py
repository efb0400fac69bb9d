"""The figures: live bqplot charts (training curves, run comparison, evaluation and LR-finder views)
and their static matplotlib twins (the snapshot kept in the notebook, exported PNGs), shared by the
panel, its Runs tab and ``compare_runs``. Nothing here imports the panel."""
