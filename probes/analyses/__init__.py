"""The built-in declared analyses (probes.analysis), one module each; importing this package declares them.

Each module is an analysis's home: its settings dataclass, collect / reduce / rows, its atlas views, citing
its method page; the heavy tensor code it reuses (probes/sinks.py, probes/dormant.py, ...) is imported inside
the functions, so that declaring them imports no torch (the command line builds its parser from them).
A new analysis adds its module here (an import and a place in the list below); the command line, batch plans, the atlas and the
remote runner then offer it (docs/architecture.md, "Where a new thing goes").
"""

from __future__ import annotations

from probes.analyses import (
    dormancy,
    dormant_heads,
    dormant_report,
    extreme_report,
    extreme_tokens,
    first_token_attention,
    hidden_sinks,
    peak_ablation,
    residual_norms,
    sinks,
    sinks_report,
    successor_heads,
    successor_report,
)
from probes.analysis import register_analysis

# The order the command line, batch plans and the atlas list them in.
# The reports (the sinks, extreme, dormant and successor commands) combine several of the others in one run.
_ORDER = (sinks_report, sinks, hidden_sinks, first_token_attention, residual_norms, extreme_report, extreme_tokens,
          peak_ablation, dormant_report, dormant_heads, dormancy, successor_report, successor_heads)
for _module in _ORDER:
    for _analysis in _module.DECLARED:
        register_analysis(_analysis, replace=True)
