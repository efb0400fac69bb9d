"""Colours and CSS that read on JupyterLab's light and dark themes.

HTML widgets use JupyterLab's CSS variables (with light fallbacks for other frontends). bqplot
marks take literal colours: mid-tone hues and no opacity under 0.5, so they show on white and on
JupyterLab's dark grey alike.
"""
from __future__ import annotations

FG = "var(--jp-ui-font-color1, #212121)"
FG_MUTED = "var(--jp-ui-font-color2, #616161)"
BG = "var(--jp-layout-color1, #ffffff)"
BG_ALT = "var(--jp-layout-color2, #eeeeee)"
BORDER = "var(--jp-border-color2, #e0e0e0)"
ERROR = "var(--jp-error-color1, #d32f2f)"
WARN = "var(--jp-warn-color1, #f57c00)"
SUCCESS = "var(--jp-success-color1, #388e3c)"
ACCENT = "var(--jp-brand-color1, #1976d2)"
FONT_SIZE = "var(--jp-ui-font-size1, 13px)"

STATE_COLORS = {"pending": FG_MUTED, "preparing": ACCENT, "running": ACCENT, "paused": WARN,
                "completed": SUCCESS, "early_stopped": SUCCESS, "stopped": FG_MUTED, "failed": ERROR}

TRAIN_COLOR = "#3b82f6"      # blue
VAL_COLOR = "#f97316"        # orange
BEST_COLOR = "#22c55e"       # green
LR_COLOR = "#a855f7"         # purple
BATCH_OPACITY = 0.55         # the running loss within the epoch in progress: the train colour, lighter
GHOST_OPACITY = 0.5          # the previous run: the same colours, dashed and half transparent
CHANGE_COLOR = "#db2777"     # pink: where a change was made to the live run (steering)
