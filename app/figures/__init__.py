"""Figures: the one figures package. Plotly only, one theme, drawn from a result's to_dict() data.

Docs: docs/app.md ("Figures"). One module per analysis (app/figures/<analysis>.py: sinks, bb,
circuits, saes (the HTML feature dashboard too), successor, batch) with functions `data -> go.Figure`
that take plain data (a to_dict() dict, live or loaded from its JSON), never a model or a tensor
result; attention.py holds the generic attention views the pages draw on arrays; theme.py the shared
look, the one token label (`token_label`) and the writers; registry.py maps a result kind to its
figures (`draw`), which the commands and `glasshouse export` use.
"""

from app.figures.theme import apply_theme, plain, save_figure, token_label

__all__ = ["apply_theme", "plain", "save_figure", "token_label"]
