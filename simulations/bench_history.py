"""The stabilization history, pruned (policies.steps.record) against whole (every
recommendation of the longest window, as before): replay speed of the same fleet, the two
interleaved in one process so that a noisy machine weighs on both alike. Decisions are the
same either way (tests/policies/test_steps.py compares them).
Run: .venv/bin/python -m simulations.bench_history
"""

from __future__ import annotations

import argparse
import statistics

import policies.steps as steps
from autoscaler.bundled import load_bundled
from autoscaler.logs import configure_logging
from simulations.bench_replay import bench_controller, fleet


def whole_history(history, desired, spec, *, now):
    keep_s = max(spec.scale_up_stabilization_s, spec.scale_down_stabilization_s)
    return tuple((t, r) for t, r in history if now - t <= keep_s) + ((now, desired),)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=50, help="copies of the bundled 2 models")
    parser.add_argument("--runs", type=int, default=4)
    args = parser.parse_args()
    configure_logging(level="warning")
    config, trace = fleet(*load_bundled(), args.copies)
    variants = {"whole history": whole_history, "pruned": steps.record}
    rates: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for _ in range(args.runs):
            for name, record in variants.items():
                steps.record = record
                model_ticks, seconds = bench_controller(config, trace, 10.0)
                rates[name].append(model_ticks / seconds)
    finally:
        steps.record = variants["pruned"]
    print(f"replay of {len(config.models)} models, model-ticks/s, {args.runs} interleaved runs each")
    for name, runs in rates.items():
        print(f"{name:14} median {statistics.median(runs):8,.0f}   runs {', '.join(f'{r:,.0f}' for r in runs)}")


if __name__ == "__main__":
    main()
