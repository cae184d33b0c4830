"""Scheduling policies: the waiting queue's order, admission control and preemption victims.

Each policy is a small class registered in `POLICIES` by name; its docstring names
the paper, the mechanism and the knobs (docs/POLICIES.md has a page per policy).
"""

# Importing registers each module's policies, in the order help lists them.
from kairos.engine.policies import classic  # noqa: F401, I001
from kairos.engine.policies import length, deadline, fair, admission, filler  # noqa: F401, I001
from kairos.engine.policies.base import (
    POLICIES,
    FifoQueue,
    QueuePolicy,
    RankedQueue,
    StepContext,
    make_waiting_queue,
)
from kairos.engine.policies.predicted import DEFAULT_PREDICTOR, needs_predictor, policy_predictor

__all__ = ["DEFAULT_PREDICTOR", "POLICIES", "FifoQueue", "QueuePolicy", "RankedQueue", "StepContext",
           "make_waiting_queue", "needs_predictor", "policy_predictor"]
