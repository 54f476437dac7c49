"""Samplers: transition kernels on an energy and the one driver that runs them.

- :mod:`~deel_ebm.core.samplers.kernel`: the contract (``bootstrap``,
  ``one_step``, ``is_calibrated``, ``copy``) and the chain state;
- :mod:`~deel_ebm.core.samplers.langevin`: unadjusted Langevin (ULA), annealed;
- :mod:`~deel_ebm.core.samplers.mala`: Metropolis-Hastings and MALA;
- :mod:`~deel_ebm.core.samplers.tempering`: replica exchange on a ladder from k;
- :mod:`~deel_ebm.core.samplers.driver`: :func:`sample_chain`, :func:`compile_chain`.
"""

from deel_ebm.core.samplers.driver import (
    ChainOutput,
    ChainResults,
    compile_chain,
    sample_chain,
    trace_x,
)
from deel_ebm.core.samplers.kernel import (
    ChainState,
    Kernel,
    StepResults,
    energy_and_grad,
)
from deel_ebm.core.samplers.langevin import (
    DEFAULT_NUM_STEPS,
    DEFAULT_STEP_SIZE,
    LangevinSampler,
    langevin_log_proposal_ratio,
    langevin_proposal,
)
from deel_ebm.core.samplers.mala import (
    MALASampler,
    MetropolisHastings,
    mala_log_accept_ratio,
)
from deel_ebm.core.samplers.tempering import ReplicaExchange, temperature_ladder

#: Samplers by short name (the command line's ``--sampler``).
SAMPLERS = {"langevin": LangevinSampler, "mala": MALASampler}

__all__ = [
    "Kernel",
    "ChainState",
    "StepResults",
    "ChainResults",
    "ChainOutput",
    "LangevinSampler",
    "MetropolisHastings",
    "MALASampler",
    "ReplicaExchange",
    "temperature_ladder",
    "sample_chain",
    "compile_chain",
    "trace_x",
    "energy_and_grad",
    "langevin_proposal",
    "langevin_log_proposal_ratio",
    "mala_log_accept_ratio",
    "SAMPLERS",
    "DEFAULT_NUM_STEPS",
    "DEFAULT_STEP_SIZE",
]
