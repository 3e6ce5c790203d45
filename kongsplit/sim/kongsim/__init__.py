"""The Kong Admin API simulator: ``KongSim`` serves real sockets (``server``), keeps the
"database" (``store``), validates like Kong's schemas (``schema``), exports and loads DB-less
configurations (``config``), injects faults (``faults``); ``cli`` is ``kongsplit sim-kong``."""

from kongsplit.sim.kongsim.faults import Faults
from kongsplit.sim.kongsim.server import MODES, KongSim, RequestRecord

__all__ = ["MODES", "Faults", "KongSim", "RequestRecord"]
