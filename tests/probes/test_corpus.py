"""Corpora: deterministic, exact lengths, distinct domains, clear errors."""

from __future__ import annotations

import pytest
import torch

from probes import InputError
from probes.corpus import DOMAINS, documents, sample


def test_domains_have_text():
    for domain in DOMAINS:
        docs = documents(domain)
        assert len(docs) > 100
    code = "".join(d.text for d in documents("code")[:20])
    prose = "".join(d.text for d in documents("prose")[:20])
    assert code.count("def ") > 20 and prose.count("def ") < prose.count(" the ")


def test_sample_is_deterministic_and_exact(smollm):
    a = sample("prose", 12, 64, smollm, seed=3)
    b = sample("prose", 12, 64, smollm.tokenizer, seed=3)
    c = sample("prose", 12, 64, smollm, seed=4)
    assert a.ids.shape == (12, 64)
    assert torch.equal(a.ids, b.ids)
    assert not torch.equal(a.ids, c.ids)
    assert len(set(a.sources)) == 12  # one window per document while documents last
    retokenized = smollm.tokenizer(a.texts[0], add_special_tokens=False).input_ids
    assert retokenized[:60] == a.ids[0, :60].tolist()


def test_prefix_counts_towards_length(smollm):
    s = sample("code", 4, 32, smollm, seed=0, prefix_ids=[smollm.tokenizer.bos_token_id])
    assert s.ids.shape == (4, 32)
    assert (s.ids[:, 0] == smollm.tokenizer.bos_token_id).all()


def test_bad_domain_and_sizes(smollm):
    with pytest.raises(InputError, match="Unknown corpus domain 'poetry'"):
        sample("poetry", 2, 16, smollm)
    with pytest.raises(InputError, match="n >= 1"):
        sample("prose", 0, 16, smollm)

