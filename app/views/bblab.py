"""BB lab page (spec: extreme-tokens.md, "The Bigram-Backcopy (BB) task"), built on probes.bb.

Trains a small BB model in the page with live progress, and draws the measurements over steps
(app/figures/bb.py) so the user watches attention on <s> at trigger vs non-trigger queries.

The page runs probes.bb.train.train, the function `glasshouse bb train` runs, in a temporary run folder
(checkpoints every `eval_every` steps), with an app.ui.progress.StreamlitReporter: the bar, its text and
a live chart of the measurements come from the reporter, and the Stop button's callback sets
st.session_state["bb_stop"], the reporter's cancel flag, which train checks between steps. The job
(settings, run folder, rows, step) lives in st.session_state["bb_job"]: a rerun that interrupts the
script resumes the run from its last checkpoint, with the same numbers (data depend on (seed, step)).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from app.figures import bb as figs
from app.ui.downloads import json_download, plot, table
from app.ui.errors import shown_errors
from app.ui.progress import StreamlitReporter
from probes.bb import train as train_mod
from probes.bb.checkpoint import load_checkpoint
from probes.bb.data import prose_task
from probes.errors import InputError
from probes.progress import Cancelled


def parse_lr(text: str) -> float | None:
    """The learning-rate box: empty means the spec's default; otherwise a positive number."""
    text = text.strip()
    if not text:
        return None
    try:
        lr = float(text)
    except ValueError:
        raise InputError(f"Learning rate {text!r} is not a number; leave it empty for the spec's default "
                         "or type e.g. 3e-4.") from None
    if not 0 < lr < float("inf"):
        raise InputError(f"Learning rate must be a positive finite number (got {lr:g}); leave it empty for the "
                         "spec's default.")
    return lr


def new_job(train: Any, settings: Any) -> dict[str, Any]:
    """A fresh run: its task, a temporary run folder and the fixed evaluation batch (for the caller's checks)."""
    task = prose_task()
    run_dir = tempfile.mkdtemp(prefix="glasshouse-bb-")
    return {"settings": settings, "task": task, "run_dir": run_dir, "eval": train.eval_batch(task, settings),
            "model": None, "rows": [], "step": 0, "status": "running", "seconds": 0.0}


def label(settings: Any) -> str:
    return f"{settings.attention}+{settings.optimizer} L{settings.layers} d{settings.d_model}"


def finish(job: dict[str, Any], status: str) -> None:
    """Mark the job done or stopped: its rows from metrics.jsonl and its model from the last checkpoint."""
    job["status"] = status
    job["rows"] = train_mod.read_metrics(job["run_dir"])
    if (Path(job["run_dir"]) / "latest").is_file():
        job["model"] = load_checkpoint(job["run_dir"])[0]


def run_job(job: dict[str, Any], live: Any) -> None:
    """Run (or resume) the job with probes.bb.train.train until its last step or st.session_state['bb_stop']."""
    s = job["settings"]

    def draw(rows: list[dict[str, Any]]) -> None:
        live.plotly_chart(figs.sink_formation_figure({label(s): rows}), key=f"bb-live-{rows[-1]['step']}")

    reporter = StreamlitReporter(f"step {job['step']} / {s.steps}",
                                 cancel=lambda: bool(st.session_state.get("bb_stop")), on_partial=draw)
    started = time.time()
    try:
        train_mod.train(s, job["run_dir"], job["task"], reporter=reporter)
        finish(job, "done")
    except Cancelled:
        finish(job, "stopped")
    finally:
        job["step"] = int(reporter.done)
        job["seconds"] += time.time() - started
        reporter.close()


def start(settings: Any) -> None:
    st.session_state["bb_pending"] = settings
    st.session_state["bb_stop"] = False


def stop() -> None:
    st.session_state["bb_stop"] = True


st.title("BB lab")
st.caption("The Bigram-Backcopy task (Guo et al. 2024): after a trigger character the next token copies the one "
           "before the trigger, otherwise it follows the bigram law. Train a small transformer and watch whether "
           "non-trigger queries start parking their attention on <s> (an attention sink) while trigger queries do not.")
st.caption("Input: sequences generated from the BB task (its bigram law estimated from the prose corpus), not the "
           "sidebar input or the sidebar model: the page trains its own small model.")

with st.form("bb_inputs"):
    c = st.columns(4)
    optimizer = str(c[0].selectbox("Optimizer", train_mod.OPTIMIZERS, key="bb_optimizer",
                                   help="AdamW (betas 0.9/0.99, weight decay 1e-4) or SGD (momentum 0.9)."))
    attention = str(c[1].selectbox("Attention", ["softmax", "relu"], key="bb_attention",
                                   help="relu: relu(q.k/sqrt(d))/(i+1), the spec's mitigation."))
    steps = int(c[2].number_input("Steps", min_value=1, max_value=20000, value=300, step=50, key="bb_steps"))
    eval_every = int(c[3].number_input("Measure every", min_value=1, max_value=1000, value=20, key="bb_eval_every"))
    c2 = st.columns(5)
    layers = int(c2[0].number_input("Layers", min_value=1, max_value=4, value=1, key="bb_layers"))
    d_model = int(c2[1].number_input("d_model", min_value=4, max_value=512, value=64, step=16, key="bb_d"))
    seq_len = int(c2[2].number_input("Tokens per sequence (incl. <s>)", min_value=3, max_value=257, value=65,
                                    key="bb_seq_len"))
    batch = int(c2[3].number_input("Batch", min_value=1, max_value=512, value=32, key="bb_batch"))
    seed = int(c2[4].number_input("Seed", min_value=0, value=0, key="bb_seed"))
    lr_text = st.text_input("Learning rate (empty: the spec's, 3e-4 AdamW+softmax, 3e-3 AdamW+ReLU, 0.03 SGD)",
                            value="", key="bb_lr")
    submitted = st.form_submit_button("Train", type="primary")
st.caption("Defaults (1 layer, d 64, 65 tokens, batch 32, 300 steps) take about 12 s on a free CPU core and about "
           "1.5 minutes on a busy one, enough to see trigger queries leave <s>. The sink itself needs the spec's "
           "batch of 512 for a few thousand steps (`glasshouse bb train`, about 11 minutes for 2000 steps at d 64 on 2 cores; "
           "docs/bb_lab.md); the spec's run is d 256, 257 tokens, batch 512, 10k steps (a GPU job).")

if submitted:
    with shown_errors():
        wanted = train_mod.TrainSettings(layers=layers, optimizer=optimizer, attention=attention, steps=steps,
                                         batch=batch, seq_len=seq_len, d_model=d_model, lr=parse_lr(lr_text),
                                         seed=seed, eval_every=eval_every, checkpoint_every=eval_every)
    start(wanted)
pending = st.session_state.pop("bb_pending", None)
if pending is not None:
    with shown_errors(), st.spinner("Estimating the BB task from the prose corpus ..."):
        st.session_state["bb_job"] = new_job(train_mod, pending)
job: dict[str, Any] | None = st.session_state.get("bb_job")
if job is None:
    st.info("Choose the settings and press **Train**.", icon=":material/science:")
    st.stop()

s = job["settings"]
if job["status"] == "running":
    st.button("Stop", key="bb_stop_button", on_click=stop, icon=":material/stop_circle:")
    live = st.empty()
    with shown_errors():
        if st.session_state.get("bb_stop"):  # the Stop click interrupted the last run: it stopped there
            finish(job, "stopped")
        else:
            run_job(job, live)
    live.empty()

rows = job["rows"]
if not rows:
    st.info("The run was stopped before its first measurement; press **Train** to start again.")
    st.stop()
last = rows[-1]
status = {"done": "finished", "stopped": "stopped", "running": "running"}[job["status"]]
st.subheader(f"{label(s)}, lr {s.learning_rate:g}: {status} at step {job['step']} of {s.steps} "
             f"({job['seconds']:.1f} s of training)")
m = st.columns(2) + st.columns(2)  # two rows: the long labels stay whole
m[0].metric("Attention on <s>, non-trigger queries", f"{last['attn_sink_nontrigger'][-1]:.3f}",
            help="Last layer, mean over query positions i >= 1 whose token is not a trigger (last measured step).")
m[1].metric("Attention on <s>, trigger queries", f"{last['attn_sink_trigger'][-1]:.3f}")
m[2].metric("Back-copy risk", f"{last['backcopy_risk']:.3f}", help="nats per token at trigger positions")
m[3].metric("Bigram excess risk", f"{last['bigram_risk']:.3f}", help="KL(oracle || model), nats per token")
tag = f"bb_{s.attention}_{s.optimizer}_L{s.layers}_d{s.d_model}_T{s.seq_len}_b{s.batch}_seed{s.seed}_step{last['step']}"
plot(figs.sink_formation_figure({label(s): rows}), f"bb_sink_formation_{tag}")
triggers = [job["task"].vocab[t] for t in job["task"].triggers]
plot(figs.token_attention_figure(last["token_attn_sink"], triggers,
                                 title=f"Attention on <s> per query token at step {last['step']} (orange: triggers)"),
     f"bb_token_attention_{tag}")
plot(figs.sink_by_position_figure({label(s): last["sink_by_position"]}), f"bb_sink_by_position_{tag}")
flat = [{"step": r["step"], "loss": r["loss"], "backcopy_risk": r["backcopy_risk"], "bigram_risk": r["bigram_risk"],
         "n_active": r["n_active"],
         **{f"{k}_L{la}": r[k][la] for k in ("attn_sink_nontrigger", "attn_sink_trigger", "value_norm_sink",
                                             "value_norm_others", "resid_norm_sink", "resid_norm_others",
                                             "logit_gap_nontrigger")
            for la in range(len(r["attn_sink_trigger"]))}} for r in rows]
table(pd.DataFrame(flat), f"bb_metrics_{tag}")
json_download({"settings": s.to_dict(), "task_triggers": triggers, "metrics": rows, "status": job["status"],
               "step": job["step"]}, f"bb_run_{tag}", label="Run JSON (settings and every measurement)")
