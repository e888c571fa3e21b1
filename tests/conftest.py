"""Shared fixtures: one session-scoped model per embedded model, with HF eager references.

Tests never touch the network. The HF reference outputs are computed by the plain HF model
(eager attention, `output_attentions=True`) before the TransformerLens bridge is booted on it,
because booting replaces HF's modules in place.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# A module that runs outside a shared model's lock while another thread holds it raises (probes/model/hooked_model.py).
os.environ.setdefault("GLASSHOUSE_CHECK_ISOLATION", "1")
if not os.environ.get("CUDA_VISIBLE_DEVICES") and not os.path.exists("/dev/nvidia0"):
    # No GPU: Triton kernels run through the interpreter (must be set before triton is imported).
    os.environ.setdefault("TRITON_INTERPRET", "1")

from dataclasses import dataclass  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

REFERENCE_PROMPTS = ["The days of the week are Monday, Tuesday, Wednesday,", "One, two, three, four,"]


@dataclass
class HFReference:
    """Outputs of the plain HF model on REFERENCE_PROMPTS (right-padded batch)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    logits: torch.Tensor
    attentions: tuple[torch.Tensor, ...]


def _reference_recorder(store: dict):
    def record(hf_model, tokenizer) -> None:
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"
        enc = tokenizer(REFERENCE_PROMPTS, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = hf_model(enc.input_ids, attention_mask=enc.attention_mask, output_attentions=True)
        store["ref"] = HFReference(enc.input_ids, enc.attention_mask, out.logits, tuple(out.attentions))

    return record


def _load_with_reference(spec: str):
    from probes import load_model

    store: dict = {}
    model = load_model(spec, device="cpu", before_wrap=_reference_recorder(store))
    if "ref" not in store:
        pytest.fail(f"{spec} was loaded before its fixture; load embedded models in tests only through the fixtures")
    return model, store["ref"]


@pytest.fixture(scope="session")
def smollm_with_ref():
    return _load_with_reference("smollm2-135m")


@pytest.fixture(scope="session")
def smollm(smollm_with_ref):
    """The embedded default model, loaded once per test session."""
    return smollm_with_ref[0]


@pytest.fixture(scope="session")
def gemma_with_ref():
    return _load_with_reference("gemma3-270m")


@pytest.fixture(scope="session")
def gemma(gemma_with_ref):
    """The second embedded model (slow to load: mark tests using it `slow`)."""
    return gemma_with_ref[0]
