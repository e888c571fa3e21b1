"""Successor heads (Gould et al. 2023): spec docs/methods/successor-heads.md, docs/successor.md."""

from probes.successor.dataset import TASKS, SuccessionDataset, Task, build_dataset, build_task
from probes.successor.in_context import InContextScores, build_prompts, head_dla, in_context_scores
from probes.successor.mod10 import Mod10Result, mod10_analysis
from probes.successor.natural import NaturalExamples, natural_text_effects
from probes.successor.ov import OVSettings, mlp0_of_tokens, ov_logits
from probes.successor.score import SuccessorScores, score_heads

__all__ = ["TASKS", "InContextScores", "Mod10Result", "NaturalExamples", "OVSettings", "SuccessionDataset",
           "SuccessorScores", "Task", "build_dataset", "build_prompts", "build_task", "head_dla",
           "in_context_scores", "mlp0_of_tokens", "mod10_analysis", "natural_text_effects", "ov_logits",
           "score_heads"]
