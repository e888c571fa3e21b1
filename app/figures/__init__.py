"""Figures: plotly only, one theme, drawn from result data (never from a model).

One module per analysis (app/figures/<analysis>.py) with functions `result -> go.Figure`;
`theme.py` holds the shared look and the writers.
"""

from app.figures.theme import apply_theme, save_figure

__all__ = ["apply_theme", "save_figure"]
