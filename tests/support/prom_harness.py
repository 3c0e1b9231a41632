"""The Prometheus harness lives in simulations/harness/prometheus.py, which the scale benchmark
shares with the tests; this name stays for the tests' imports."""

from simulations.harness.prometheus import *  # noqa: F401,F403
from simulations.harness.prometheus import __all__  # noqa: F401
