"""Per-key attention sums from fused flash-attention passes, given each query's log-sum-exp (CPU).

Spec: docs/methods/kernels.md ("Attention statistics"); docs/kernels.md ("The statistics path on the CPU").

With p_ij = exp(s_ij - lse_i), s_ij = scale q_i . k_j (causal, i >= j), the attention key j receives is

    received_j = sum_{i >= j} exp(s_ij - lse_i) = exp(LSE_j),

the log-sum-exp of a second causal attention with the roles of keys and queries swapped: its query j is
[scale k_j, 1], its key i is [q_i, -lse_i] (so their dot product is log p_ij), and both sequences run in
reverse order so "i >= j" becomes the ordinary causal mask. torch's fused CPU flash attention
(`_scaled_dot_product_flash_attention_for_cpu`) returns that log-sum-exp beside its output, so no score
matrix is ever materialised and the cost is one more attention pass. With the swapped pass's values set
to its keys, its output gives sum_i p_ij log p_ij as well (a column's entropy), and one more ordinary pass
with values k gives each row's entropy, lse_i - scale q_i . E_p[k]. The model's own pass provides lse_i:
`probes.model.observed_attention` computes the layer's output with the same fused op and keeps its lse.

Only causal attention without a sliding window or other mask goes this way; the chunked torch reference
(attention_stats_reference.received_attention) covers the rest and is the check in tests.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

_NOT_A_QUERY = 1e30  # subtracted from padded queries' logits: exp() of it is 0 in fp32, and it stays finite


def flash_attention_with_lse(query: Tensor, key: Tensor, value: Tensor, scale: float | None
                             ) -> tuple[Tensor, Float[Tensor, "batch head pos"]]:
    """Causal attention output [batch, head, pos, d] and each query's log-sum-exp (fp32), one fused CPU pass.
    Grouped-query key/value heads are read as they are."""
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(query, key, value, 0.0, True, scale=scale)
    return out, lse


def flash_takes(query: Tensor, key: Tensor, attention_mask: Tensor | None, dropout: float) -> bool:
    """Whether a call can run through the fused CPU op with its lse: CPU, plain causal (no mask tensor),
    as many keys as queries (more than one), no dropout, a float dtype the op takes."""
    return (query.device.type == "cpu" and attention_mask is None and dropout == 0.0
            and query.shape[2] == key.shape[2] > 1
            and query.dtype in (torch.float32, torch.bfloat16, torch.float16)
            and hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"))


def received_from_lse(q: Tensor, k: Tensor, lse: Tensor, lengths: Tensor, scale: float,
                      entropies: bool = False) -> dict[str, Float[Tensor, "batch head pos"]]:
    """received_attention's sums (attention_stats_reference.SUMMARIES) from fused passes; fp32 [batch, head, pos].

    q [batch, head, pos, d], k [batch, kv_head, pos, d] as the softmax reads them, lse [batch, head, pos] the
    model pass's log-sum-exp; queries at or beyond lengths[b] are left out of the sums."""
    bsz, h, t, _ = q.shape
    group = h // k.shape[1]
    qf, kf, lf = q.float(), k.float().repeat_interleave(group, dim=1), lse.float()
    real = torch.arange(t, device=q.device)[None] < lengths.to(q.device)[:, None]  # [batch, pos]
    shift = torch.where(real[:, None], -lf, torch.full_like(lf, -_NOT_A_QUERY))
    ones = torch.ones(bsz, h, t, 1, device=q.device)
    swapped_q = torch.cat([kf * scale, ones], dim=-1).flip(2).contiguous()  # [batch, head, key, d + 1]
    swapped_k = torch.cat([qf, shift[..., None]], dim=-1).flip(2).contiguous()  # [batch, head, query, d + 1]
    mean_log_p, log_received = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        swapped_q, swapped_k, swapped_k, 0.0, True, scale=1.0)
    received = log_received.flip(2).exp()
    out = {"received": received}
    if not entropies:
        return out
    # the swapped pass's output is E_w[key_i]; query_j . E_w[key_i] = sum_i p_ij log p_ij / received_j
    out["received_xlogx"] = received * (swapped_q * mean_log_p).sum(dim=-1).flip(2)
    expected_k, _ = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(qf, kf, kf, 0.0, True, scale=scale)
    out["entropy"] = lf - scale * (qf * expected_k).sum(dim=-1)
    out["first"] = first_key_attention(qf, k, lf, scale)
    return out


def first_key_attention(q: Tensor, k: Tensor, lse: Tensor, scale: float) -> Float[Tensor, "batch head pos"]:
    """A[i, 0] = exp(scale q_i . k_0 - lse_i), fp32; k [batch, kv_head, pos, d] (grouped-query heads expanded)."""
    k0 = k[:, :, :1].float().repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    return torch.exp(scale * (q.float() * k0).sum(dim=-1) - lse.float())
