"""Simulators behind ``kongsplit demo`` and the tests (the Kong Admin API, ...)."""

from kongsplit.sim.kong import MODES, KongSim, RequestRecord
from kongsplit.sim.kong_faults import Faults

__all__ = ["MODES", "Faults", "KongSim", "RequestRecord"]
