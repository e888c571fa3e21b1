"""The progress and cancel protocol (probes.progress) and the pipelines that take `reporter=`."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from probes.bb.data import estimate_task
from probes.bb.train import TrainSettings, train
from probes.progress import Cancelled, NullReporter, Reporter, TqdmReporter, as_reporter, batches


class Recorder(Reporter):
    """Keeps every fraction shown; cancels once `stop_at` updates were seen."""

    def __init__(self, stop_at: int | None = None) -> None:
        super().__init__(cancel=lambda: stop_at is not None and len(self.seen) >= stop_at)
        self.seen: list[float] = []
        self.texts: list[str] = []

    def show(self) -> None:
        self.seen.append(self.fraction)
        self.texts.append(self.text)


def monotone_to_one(seen: list[float]) -> None:
    assert seen, "nothing was reported"
    assert all(b >= a for a, b in zip(seen, seen[1:], strict=False)), seen
    assert seen[-1] == pytest.approx(1.0)


def test_null_and_tqdm_report_fraction_and_cancel_between_steps() -> None:
    for rep in (NullReporter(), TqdmReporter("t", disable=True)):
        rep.update("half", 1, 2)
        assert rep.fraction == 0.5 and rep.text == "half"
        rep.update("back", 1, 4)  # a smaller fraction never moves it back
        assert rep.fraction == 0.5
        rep.check()  # no flag: nothing happens
        rep.cancel_now()
        with pytest.raises(Cancelled):
            rep.check()
        rep.close()
    flag = {"stop": False}
    rep = NullReporter(cancel=lambda: flag["stop"])
    rep.check()
    flag["stop"] = True
    with pytest.raises(Cancelled):
        rep.check()


def test_parts_map_into_the_parent_and_share_its_cancel_flag() -> None:
    parent = Recorder()
    first, second = parent.part(0.0, 0.25), parent.part(0.25, 1.0)
    first.update("a", 1, 2)
    assert parent.fraction == pytest.approx(0.125) and parent.text == "a"
    first.update("a", 2, 2)
    second.update("b", 1, 3)
    assert parent.fraction == pytest.approx(0.5)
    second.update("b", 3, 3)
    monotone_to_one(parent.seen)
    parent.cancel_now()
    with pytest.raises(Cancelled):
        second.check()


def test_as_reporter_takes_a_reporter_or_the_show_a_bar_switch() -> None:
    assert isinstance(as_reporter(None, False), NullReporter)
    bar = as_reporter(None, True)
    assert isinstance(bar, TqdmReporter)
    bar.close()
    mine = NullReporter()
    assert as_reporter(mine, True) is mine


def test_batches_reports_after_each_batch_and_checks_before_each() -> None:
    rec = Recorder()
    assert batches(list(range(5)), 2, sum, rec, "sum") == [1, 5, 4]
    assert rec.seen == pytest.approx([1 / 3, 2 / 3, 1.0]) and rec.texts[-1] == "sum: batch 3 of 3"
    ran: list[int] = []
    with pytest.raises(Cancelled):
        batches(list(range(5)), 2, lambda b: ran.append(len(b)), Recorder(stop_at=2))
    assert ran == [2, 2]  # the third batch never ran


@pytest.fixture(scope="module")
def small_task() -> Any:
    return estimate_task([("the cat sat on the mat; then the dog ate the hat. " * 4)], n_chars=12)


def test_bb_train_reports_every_step_and_a_cancel_resumes_to_the_same_weights(small_task: Any, tmp_path: Any) -> None:
    settings = TrainSettings(steps=8, batch=4, seq_len=13, d_model=8, eval_every=4, eval_batch=8,
                             checkpoint_every=100)
    rec = Recorder()
    whole = train(settings, tmp_path / "whole", small_task, reporter=rec)
    monotone_to_one(rec.seen)
    # the start, after every step, and the last step's measurement
    assert len(rec.seen) == 2 + settings.steps and rec.done == settings.steps
    assert rec.texts[-1].startswith("step 8 / 8: attention on <s> non-trigger")

    stopper = Recorder(stop_at=4)  # the start and 3 steps, then the flag: steps 0-2 ran
    with pytest.raises(Cancelled):
        train(settings, tmp_path / "parts", small_task, reporter=stopper)
    assert stopper.done == 3 and (tmp_path / "parts" / "step_000003").is_dir()  # checkpointed where it stopped
    resumed = train(settings, tmp_path / "parts", small_task, reporter=NullReporter())
    assert resumed.resumed_from == 3
    assert [r["step"] for r in resumed.metrics] == [0, 4, 8]
    assert resumed.metrics[-1]["loss"] == pytest.approx(whole.metrics[-1]["loss"], abs=1e-6)
    from probes.bb.checkpoint import load_checkpoint

    a, b = load_checkpoint(tmp_path / "whole")[0], load_checkpoint(tmp_path / "parts")[0]
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, msg=name)


def test_sae_trainer_reports_and_a_cancel_resumes(tmp_path: Any) -> None:
    from saes.activation_store import TensorSource
    from saes.trainer import TrainConfig
    from saes.trainer import train as sae_train

    acts = torch.randn(256, 8, generator=torch.Generator().manual_seed(0))
    sae = {"architecture": "topk", "d_in": 8, "d_sae": 16, "k": 3}

    def cfg(out: str) -> TrainConfig:
        return TrainConfig(sae=sae, total_tokens=256, batch_size=32, warmup_steps=2, dead_window_tokens=256, log_every=2,
                           checkpoint_every=100, out_dir=out, progress=False)

    rec = Recorder()
    whole = sae_train(cfg(str(tmp_path / "whole")), TensorSource(acts), reporter=rec)
    monotone_to_one(rec.seen)
    assert len(rec.seen) == 1 + 8
    with pytest.raises(Cancelled):
        sae_train(cfg(str(tmp_path / "parts")), TensorSource(acts), reporter=Recorder(stop_at=4))
    resumed = sae_train(cfg(str(tmp_path / "parts")), TensorSource(acts))
    assert resumed.steps == 8
    torch.testing.assert_close(resumed.sae.W_dec, whole.sae.W_dec)


def test_compute_sinks_reports_per_batch_and_a_cancel_stops_it(smollm: Any) -> None:
    from probes.sinks import compute_sinks, inputs_for_regime

    ids = inputs_for_regime(smollm, "random", 2, 4, seed=0, prepend_bos=False)
    rec = Recorder()
    with_rep = compute_sinks(smollm, ids, batch_size=1, reporter=rec)
    monotone_to_one(rec.seen)
    assert rec.seen == [0.5, 1.0]
    torch.testing.assert_close(with_rep.alpha, compute_sinks(smollm, ids, batch_size=2).alpha)  # reporter-free
    stopper = Recorder(stop_at=1)  # cancelled after the first of two batches
    with pytest.raises(Cancelled):
        compute_sinks(smollm, ids, batch_size=1, reporter=stopper)
    assert stopper.seen == [0.5]


def _reports_to_one_and_cancels(run: Any, results_equal: Any = None) -> None:
    """run(reporter) reports a monotone fraction ending at 1, gives the reporter-free result, and stops
    with Cancelled once the cancel flag is set after its first report."""
    rec = Recorder()
    got = run(rec)
    monotone_to_one(rec.seen)
    assert len(rec.seen) >= 2 and all(rec.texts)
    if results_equal is not None:
        results_equal(got, run(None))
    stopper = Recorder(stop_at=1)
    with pytest.raises(Cancelled):
        run(stopper)
    assert len(stopper.seen) == 1 and stopper.fraction < 1.0


@pytest.fixture(scope="module")
def tiny() -> Any:
    """The conformance zoo's tiny random Llama (2 layers, byte-level tokenizer): cheap forward passes."""
    from tests.conformance.zoo import entry

    return entry("llama").model


def test_sinks_hidden_sinks_and_calibration_search_report_and_cancel(tiny: Any) -> None:
    from probes.hidden_sinks import detect_hidden_sinks, search_calibration_heads
    from probes.sinks import inputs_for_regime, sinks_by_regime

    ids = inputs_for_regime(tiny, "random", 2, 6, seed=0, prepend_bos=False)
    _reports_to_one_and_cancels(lambda r: sinks_by_regime(tiny, n=2, T=4, regimes=("random", "repeat"),
                                                          batch_size=1, reporter=r),
                                lambda a, b: torch.testing.assert_close(a["repeat"].alpha, b["repeat"].alpha))
    _reports_to_one_and_cancels(lambda r: detect_hidden_sinks(tiny, ids, batch_size=1, reporter=r),
                                lambda a, b: torch.testing.assert_close(a.alpha, b.alpha))
    _reports_to_one_and_cancels(lambda r: search_calibration_heads(tiny, ids, candidates=2, batch_size=1,
                                                                   reporter=r),
                                lambda a, b: a[1] == pytest.approx(b[1]))


def test_dormant_and_extreme_report_and_cancel(tiny: Any) -> None:
    from probes.dormant import dormant_heads
    from probes.extreme import extreme_tokens, peak_ablation
    from probes.sinks import inputs_for_regime

    def same_rows(a: Any, b: Any) -> None:
        assert [(r.layer, r.head, r.loss_delta) for r in a.rows] == [(r.layer, r.head, r.loss_delta) for r in b.rows]

    _reports_to_one_and_cancels(lambda r: dormant_heads(tiny, n=2, T=6, top=1, controls=1, batch_size=1,
                                                        reporter=r), same_rows)
    ids = inputs_for_regime(tiny, "random", 2, 5, seed=1, prepend_bos=False)
    _reports_to_one_and_cancels(lambda r: extreme_tokens(tiny, ids, batch_size=1, reporter=r),
                                lambda a, b: torch.testing.assert_close(a.resid_norm, b.resid_norm))
    _reports_to_one_and_cancels(lambda r: peak_ablation(tiny, ids, layers=[0, 1], components=("mlp",),
                                                        reporter=r),
                                lambda a, b: [x["sink"] for x in a.rows] == pytest.approx([x["sink"] for x in b.rows]))


def test_successor_pipelines_report_and_cancel(smollm: Any) -> None:
    from probes.successor import in_context_scores, natural_text_effects, score_heads
    from probes.successor.dataset import build_dataset

    ds = build_dataset(smollm.tokenizer)
    ds.tasks = ds.tasks[:2]
    _reports_to_one_and_cancels(lambda r: score_heads(smollm, dataset=ds, reporter=r),
                                lambda a, b: torch.testing.assert_close(a.scores, b.scores))
    _reports_to_one_and_cancels(lambda r: in_context_scores(smollm, tasks=("days", "months"), max_prompts=2,
                                                            reporter=r),
                                lambda a, b: torch.testing.assert_close(a.dla, b.dla))
    _reports_to_one_and_cancels(lambda r: natural_text_effects(smollm, 3, 0, n=2, length=12, top=2, reporter=r),
                                lambda a, b: a.mean_effect == pytest.approx(b.mean_effect))


def test_first_token_attention_one_definition_both_query_conventions() -> None:
    """probes.quantities by hand on a 3-token causal pattern; the sink metric's alpha_1 is min_query=0 and
    probes.extreme.sink_attention is min_query=1."""
    from probes.extreme import sink_attention
    from probes.quantities import attention_on_first, first_token_attention
    from probes.sinks import alpha_from_pattern

    pattern = torch.tensor([[1.0, 0.0, 0.0], [0.25, 0.75, 0.0], [0.5, 0.125, 0.375]])
    assert attention_on_first(pattern).tolist() == [1.0, 0.25, 0.5]
    assert float(first_token_attention(pattern, min_query=0)) == pytest.approx((1.0 + 0.25 + 0.5) / 3)
    assert float(first_token_attention(pattern, min_query=1)) == pytest.approx((0.25 + 0.5) / 2)
    batch = torch.stack([pattern, pattern.flip(0).tril()])[None]  # [1, 2, T, T]
    torch.testing.assert_close(first_token_attention(batch, 0), alpha_from_pattern(batch)[..., 0])
    torch.testing.assert_close(sink_attention(batch), first_token_attention(batch, 1))
    assert first_token_attention(batch, 1, dtype=torch.float64).dtype == torch.float64
    from probes.errors import InputError

    with pytest.raises(InputError):
        first_token_attention(pattern, min_query=3)


def test_capture_attention_statistics_and_the_runner_follow_the_protocol(tiny: Any, tmp_path: Any) -> None:
    """The loops that had their own tqdm bars (capture, attention_statistics, the analysis runner) report a
    monotone fraction ending at 1, keep their reporter-free results, and stop when cancelled."""
    from probes.analysis import get_analysis, run_analysis
    from probes.attention_stats import attention_statistics
    from probes.model.capture import capture

    ids = torch.randint(3, 200, (4, 6))
    _reports_to_one_and_cancels(lambda r: capture(tiny, ids, what=["resid_post"], batch_size=1, reporter=r),
                                lambda a, b: torch.testing.assert_close(a["resid_post"], b["resid_post"]))
    _reports_to_one_and_cancels(lambda r: attention_statistics(tiny, ids, batch_size=1, reporter=r),
                                lambda a, b: torch.testing.assert_close(a.received, b.received, equal_nan=True))
    norms = get_analysis("residual_norms")
    settings = norms.make_settings({"batch_size": 1})
    _reports_to_one_and_cancels(lambda r: run_analysis(norms, tiny, settings, ids, reporter=r),
                                lambda a, b: torch.testing.assert_close(a["mean_norm"], b["mean_norm"]))
