"""Builds notebooks/circuits.ipynb (run from the repository root; then execute it with nbclient)."""

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell("# Position-aware circuit discovery\n\nEAP scores every edge of the embedded model's graph; "
                      "PEAP keeps token positions (spans of the task's schema) and scores crossing key/value edges "
                      "exactly. Greedy circuits grown from the logits are compared by normalized faithfulness. "
                      "See docs/circuits.md. Few examples, so that it runs in minutes on a CPU; the curve goes on along the 1-3-10 grid until it reaches faithfulness 0.8."),
    new_code_cell("# Parameters. The test suite (tests/test_notebooks.py) runs this notebook with\n"
             "# GLASSHOUSE_NOTEBOOK_SMALL=1: the same code at the smallest sizes.\n"
             "import os\nSMALL = os.environ.get('GLASSHOUSE_NOTEBOOK_SMALL') == '1'\n"
                  "N, COUNTS = (2, [10, 100]) if SMALL else (3, [10, 100, 1000])\n"
                  "EXTEND_TO = None if SMALL else 0.8  # the full run extends the curve along 1-3-10 until 0.8",
                  metadata={"tags": ["parameters"]}),
    new_code_cell("import os\nos.environ['HF_HUB_OFFLINE'] = '1'\nimport torch\ntorch.manual_seed(0)\n"
                  "from probes import load_model\nfrom circuits.discover import discover\n"
                  "from circuits.tasks import make_task\n"
                  "from app.figures.circuits import circuit_figure, curves_figure\n"
                  "model = load_model('smollm2-135m', device='cpu')"),
    new_markdown_cell("## The task\nSuccession: a sequence of weekdays or months; the corrupted prompt shifts the "
                      "sequence two steps. The schema names the spans every example maps."),
    new_code_cell("task = make_task('succession', model, n=N, seed=0)\n"
                  "print(task.schema.names)\nfor c, x in zip(task.clean_text, task.corrupted_text):\n"
                  "    print(repr(c), '|', repr(x))"),
    new_markdown_cell("## Scores, circuits and faithfulness\nOne PEAP pass gives both rankings (the agnostic one "
                      "sums the per-span scores). Faithfulness 1 is the full graph, 0 the all-corrupted run."),
    new_code_cell("result = discover(model, task, which='both', counts=COUNTS, extend_to=EXTEND_TO,\n"
                  "                  progress=False)\n"
                  "print('clean', round(result.scores.clean_metric, 3), 'corrupted', "
                  "round(result.scores.corrupted_metric, 3))\nfor c in result.curves:\n"
                  "    print(c.label, [round(v, 3) for v in c.faithfulness], 'area', round(c.area, 3), "
                  "'edges to 0.8', c.edges_to_80)"),
    new_code_cell("curves_figure([c.to_dict() for c in result.curves], 'succession: faithfulness against size')"),
    new_markdown_cell("## The position-aware circuit\nSpans are columns, layers rows; red edges raise the metric, "
                      "blue ones lower it. Hover an edge's midpoint for its name, spans and score."),
    new_code_cell("circuit_figure(result.circuits['position-aware'], 'succession, position-aware circuit')"),
    new_code_cell("circuit_figure(result.circuits['position-agnostic'], 'succession, position-agnostic circuit')"),
]
nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                          "language": "python"}})
nbformat.write(nb, "notebooks/circuits.ipynb")
