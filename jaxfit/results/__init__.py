"""What a sweep gives back: `SweepResult` (the table, curves, parameters, the one ranking, save and
load with a manifest), when a run counts as diverged (`divergence`), and where and when it was
computed (`provenance`)."""

from .divergence import (BCE_CLAMP, BCE_CLAMP_FRACTION, DIVERGENCE_RULES, LOSS_BLOWUP_FACTOR, PARAM_BLOWUP,
                         chance_loss, divergence)
from .provenance import cpu_name, environment, git_commit, provenance, versions
from .result import FORMAT_VERSION, HIGHER_IS_BETTER, MANIFEST, RESULT_FILES, SweepResult

__all__ = ["BCE_CLAMP", "BCE_CLAMP_FRACTION", "DIVERGENCE_RULES", "LOSS_BLOWUP_FACTOR", "PARAM_BLOWUP", "FORMAT_VERSION", "HIGHER_IS_BETTER", "MANIFEST", "RESULT_FILES", "SweepResult",
           "chance_loss", "cpu_name", "divergence", "environment", "git_commit", "provenance", "versions"]
