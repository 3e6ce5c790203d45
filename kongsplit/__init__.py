"""kongsplit: Argo Rollouts canary weights, applied to Kong upstream targets."""

from kongsplit.metrics import package_version

__version__ = package_version()
