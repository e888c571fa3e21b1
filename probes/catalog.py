"""The built-in analyses, declared in their own modules (probes.analysis): importing this declares them.

A new analysis adds its module here with one import line; the command line, batch plans, the atlas and the
remote runner then offer it (docs/architecture.md, "A new analysis").
"""

from __future__ import annotations

import probes.first_token  # noqa: F401
import probes.residual_norms  # noqa: F401
