"""probes.remote: statistics computed inside nnsight traces; the NDIF request is built, never sent.

Checked against probes.model.capture (a different path: TransformerLens hooks) at 1e-5.
"""

from __future__ import annotations

import pytest
import torch

from probes import capture
from probes import remote as nd


@pytest.fixture(scope="module")
def ids(smollm):
    text = "The days of the week are Monday, Tuesday, Wednesday, Thursday"
    row = smollm.tokenizer(text, add_special_tokens=False).input_ids
    return torch.tensor([row, row[::-1]])


def test_trace_statistics_match_capture(smollm, ids):
    lm = smollm.nnsight
    cap = capture(smollm, ids, what=["resid_post", "pattern"])
    norms = nd.residual_norms(lm, ids)
    assert norms.shape == (30, ids.shape[1])
    assert torch.allclose(norms, cap["resid_post"].norm(dim=-1).mean(0), rtol=1e-5, atol=1e-5)
    first = nd.first_token_attention(lm, ids, min_query=3)
    assert first.shape == (30, 9)
    assert torch.allclose(first, cap["pattern"][:, :, :, 3:, 0].mean(dim=(0, 3)), atol=1e-5)


def test_serverless_simulation_of_the_remote_path(smollm, ids):
    lm = smollm.nnsight
    local = nd.first_token_attention(lm, ids)
    simulated = nd.first_token_attention(lm, ids, remote="local")  # serialize, deserialize, run
    assert torch.equal(local, simulated)
    assert torch.equal(nd.residual_norms(lm, ids), nd.residual_norms(lm, ids, remote="local"))


def test_remote_request_is_built_but_not_sent_and_saves_only_statistics(smollm, ids):
    lm = smollm.nnsight
    for fn in (nd.residual_norms, nd.first_token_attention):
        with nd.intercept_remote("HuggingFaceTB/SmolLM2-135M") as seen, pytest.raises(nd.RemoteRequestBlocked):
            fn(lm, ids, remote=True)
        (req,) = seen
        assert '"repo_id": "HuggingFaceTB/SmolLM2-135M"' in req.model_key
        assert 0 < req.payload_bytes < 200_000  # the code and a few names, no tensors of activations
        assert req.source.count(".save(") == 1 and "= torch.stack(rows, dim=1).cpu().save()" in req.source
        # no model object travels: names, sizes and the (unused here) zeroed component and layer
        assert set(req.variables) <= {"lm", "path", "n_layers", "attn", "dtype", "component", "at"}
    assert nd.layer_path(lm) == "model.layers" and nd.attn_name(lm) == "self_attn"


def test_bad_inputs(smollm):
    with pytest.raises(nd.InputError):
        nd.residual_norms(smollm.nnsight, torch.tensor([1, 2, 3]))
    with pytest.raises(nd.InputError):
        nd.first_token_attention(smollm.nnsight, torch.tensor([[1, 2, 3]]), min_query=3)
