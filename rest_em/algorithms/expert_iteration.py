"""Expert Iteration as Havrilla et al. 2024 ("Teaching Large Language Models to Reason with Reinforcement
Learning", arXiv 2403.04642) run it: every round samples from the current policy, keeps the correct
samples, joins them with the correct samples of all earlier rounds (deduplicated), and fine-tunes the
model from its initial weights, not the previous round's, on that union.

Knobs: ``filter.accumulate`` (preset ``true``) and ``mstep.init`` (preset ``base``). Each round's own
correct samples pass the same filter as ReST-EM's (``filter.cap``, ``filter.dedupe``), so the algorithms
differ only in what is joined and where training starts.
"""

from __future__ import annotations

from rest_em.algorithms.base import Algorithm


class ExpertIteration(Algorithm):
    name = "expert_iteration"
    source = "Havrilla et al. 2024, Teaching Large Language Models to Reason with RL (arXiv 2403.04642)"
    default_accumulate = True
    default_init = "base"


ALGORITHM = ExpertIteration
