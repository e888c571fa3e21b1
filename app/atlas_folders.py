"""Where atlas runs are written by default: runs/atlas/<model>+<model>, relative to the working folder.

Shared by `glasshouse atlas` (app/commands/atlas.py, when --out is not given) and the Compare models page
(app/views/compare.py, which lists the saved folders and computes live into the same folder). Imports
nothing beyond pathlib, so the command line can import it while building its parser.
"""

from __future__ import annotations

from pathlib import Path

ATLAS_ROOT = Path("runs") / "atlas"


def default_folder(models: list[str]) -> Path:
    """The atlas folder of these models: their specs joined by '+', '/' made '_' (each model once, in order)."""
    safe = "+".join(m.replace("/", "_").strip("._") or "model" for m in dict.fromkeys(models))
    return ATLAS_ROOT / safe
