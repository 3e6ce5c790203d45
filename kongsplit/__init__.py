"""kongsplit: Argo Rollouts canary weights, applied to Kong upstream targets."""

from kongsplit.version import package_version

__version__ = package_version()
