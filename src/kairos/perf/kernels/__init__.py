"""Measured-kernel step-time model backed by aiconfigurator-core's GPU kernel database.

Importing this package needs only numpy; the database (and pandas/pyarrow) is touched
when a `KernelModel` is built, which needs the optional extra `kairos[kernels]`.
"""

from kairos.perf.kernels.database import KernelDatabase, covered_gpus, kernel_coverage
from kairos.perf.kernels.model import KernelModel

__all__ = ["KernelDatabase", "KernelModel", "covered_gpus", "kernel_coverage"]
