"""The replay example shipped inside the package (autoscaler/data/): a recorded BurstGPT trace
and the config that replays it. `autoscaler replay` with no arguments runs them; the lab's
benchmarks and the golden-decision test load the same two files through these functions."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from autoscaler.config import Config, load_config
from autoscaler.metrics.recorded import RecordedTrace, load_trace


def _data(name: str) -> Path:
    return Path(str(resources.files("autoscaler") / "data" / name))


def bundled_config_path() -> Path:
    """The config for the bundled trace (autoscaler/data/replay.yaml)."""
    return _data("replay.yaml")


def bundled_trace_path() -> Path:
    """The bundled trace in the native CSV format (autoscaler/data/burstgpt.csv.gz)."""
    return _data("burstgpt.csv.gz")


def load_bundled() -> tuple[Config, RecordedTrace]:
    """The bundled config and trace, loaded and validated."""
    return load_config(bundled_config_path()), load_trace(bundled_trace_path())
