"""Every shipped Kubernetes action, as the registry takes them."""

from __future__ import annotations

from remediations.base import Action
from remediations.kubernetes.container import SetEnv, SetResources
from remediations.kubernetes.pods import DeletePod
from remediations.kubernetes.restart import RolloutRestart
from remediations.kubernetes.rollback import RolloutUndo
from remediations.kubernetes.scale import Scale

__all__ = ["ACTIONS"]

# Instances with the default retry policy; tests build their own with a faster one.
ACTIONS: list[Action] = [
    RolloutRestart(),
    Scale(),
    SetResources(),
    SetEnv(),
    RolloutUndo(),
    DeletePod(),
]
