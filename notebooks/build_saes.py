"""Build notebooks/saes.ipynb (run from the repository root; then execute it with nbclient)."""

import nbformat as nbf

cells = [
    ("md", "# Sparse autoencoders on SmolLM2's residual stream\n\nTrains a small TopK SAE on `blocks.6.hook_resid_post` "
           "of the embedded model on a CPU, evaluates it (L0, FVU, CE loss recovered) and walks through a few features. "
           "See docs/saes.md."),
    ("params", "# Parameters. The test suite (tests/test_notebooks.py) runs this notebook with\n"
             "# GLASSHOUSE_NOTEBOOK_SMALL=1: the same code at the smallest sizes.\n"
             "import os\nSMALL = os.environ.get('GLASSHOUSE_NOTEBOOK_SMALL') == '1'\n"
             "if SMALL:\n    CHUNKS, CONTEXT, PROMPTS, HELD_OUT, D_SAE, N_DASH = 2, 16, 4, 32, 64, 2\n"
             "else:\n    CHUNKS, CONTEXT, PROMPTS, HELD_OUT, D_SAE, N_DASH = 12, 64, 8, 1024, 1536, 6"),
    ("code", "import os\nos.environ['HF_HUB_OFFLINE'] = '1'\nos.environ.setdefault('OMP_NUM_THREADS', '1')\n"
             "import torch\nfrom probes import load_model\nfrom probes.corpus import sample\n"
             "from saes.activation_store import ActivationStore, TensorSource\n"
             "from saes.trainer import TrainConfig, train\nfrom saes.evaluate import reconstruction_metrics, ce_loss_recovered\n"
             "from saes.dashboard import feature_dashboards, prompt_features\nmodel = load_model('smollm2-135m')"),
    ("md", "## Activations\nStream activations at the hook over both corpus domains (the forward pass stops at the hook)."),
    ("code", "HOOK = 'blocks.6.hook_resid_post'\nstore = ActivationStore(model, HOOK, context_length=CONTEXT, prompts_per_batch=PROMPTS, seed=0)\n"
             "chunks = []\nfor i, (a, _, _) in zip(range(CHUNKS), store.chunks()):\n    chunks.append(a)\nacts = torch.cat(chunks)\n"
             "train_acts, held_out = acts[:-HELD_OUT], acts[-HELD_OUT:]\nacts.shape"),
    ("md", "## Train a TopK SAE (k = 16, 1536 features)"),
    ("code", "cfg = TrainConfig(sae={'architecture': 'topk', 'd_in': 576, 'd_sae': D_SAE, 'k': 16, 'hook_name': HOOK},\n"
             "                  total_tokens=len(train_acts) * 2, batch_size=32 if SMALL else 256, lr=2e-3, warmup_steps=10, dead_window_tokens=256 if SMALL else 4096,\n"
             "                  log_every=10, checkpoint_every=50, out_dir='runs/notebook_sae', progress=False)\n"
             "import shutil; shutil.rmtree('runs/notebook_sae', ignore_errors=True)\nres = train(cfg, TensorSource(train_acts))\n"
             "print(f'{res.tokens} tokens in {res.seconds:.0f} s')"),
    ("code", "rec = reconstruction_metrics(res.sae, held_out)\n"
             "ids = sample('prose', 2 if SMALL else 4, 16 if SMALL else 48, model, seed=99).ids\nce = ce_loss_recovered(model, res.sae, HOOK, ids, ablation='zero')\n"
             "print(f'L0 {rec.l0:.1f}  FVU {rec.fvu:.3f}  dead {rec.dead}/{rec.d_sae}  CE recovered {ce.ce_loss_recovered:.3f}')"),
    ("md", "How often each feature fires on the held-out tokens (log10 of the fraction of tokens; dead features are counted in the title)."),
    ("code", "import plotly.io as pio\npio.renderers.default = 'plotly_mimetype'  # figure data only; no plotly.js copy in the notebook\n"
             "from app.figures.saes import density_histogram, feature_top_tokens\ndensity_histogram(rec.to_dict())"),
    ("md", "## Features\nThree live features of middling density (in a run this short the densest features all share the same few top contexts), "
           "with their top contexts and the tokens their decoder directions promote."),
    ("code", "dens = (res.sae.encode(held_out) > 0).float().mean(0)\nlive = int((dens > 0).sum())\nfeatures = dens.argsort(descending=True)[live // 2 : live // 2 + 3].tolist()\n"
             "ids = torch.cat([sample(d, N_DASH, 16 if SMALL else 48, model, seed=5).ids for d in ('prose', 'code')])\n"
             "dash = feature_dashboards(model, res.sae, ids, features, n_top=3)\n"
             "for j, e in dash['features'].items():\n    print(f'feature {j}: density {e[\"density\"]:.3f}; promotes',"
             " [t['token'] for t in e['logit_effects']['top'][:5]])\n"
             "    for ex in e['top_examples']:\n        print('   ', repr(''.join(ex['tokens'])), round(ex['activation'], 2))"),
    ("code", "feature_top_tokens(dash['features'][str(features[0])])"),
    ("code", "pf = prompt_features(model, res.sae, 'def add(a, b):\\n    return a + b', top=3)\n"
             "for t in pf['tokens']:\n    print(repr(t['token']), [(f['feature'], round(f['activation'], 2)) for f in t['features']])"),
]
nb = nbf.v4.new_notebook()
nb.cells = [nbf.v4.new_markdown_cell(s) if k == "md" else
            nbf.v4.new_code_cell(s, metadata={"tags": ["parameters"]} if k == "params" else {}) for k, s in cells]
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbf.write(nb, "notebooks/saes.ipynb")
