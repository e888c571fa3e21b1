"""Every declared analysis the app offers: probes' own (probes/analyses/) and those declared above probes,
in circuits/ and saes/ (probes imports nothing above it, so the app brings them in here).

The command line, batch plans, the atlas and the Declared analyses page list analyses through `analyses()`.
"""

from __future__ import annotations

import circuits.analysis
import probes.analyses  # noqa: F401  (probes' own come first)
import saes.analysis
from probes.analysis import Analysis, register_analysis
from probes.analysis import analyses as declared_in_probes

for _analysis in (*circuits.analysis.DECLARED, *saes.analysis.DECLARED):
    register_analysis(_analysis, replace=True)


def analyses() -> list[Analysis]:
    """Every declared analysis, in the order they are listed everywhere."""
    return declared_in_probes()
