"""Policy work: our policy alone over the standard suite, at its defaults and with some fields
changed, side by side over several seeds. The peers and the oracle do not change with our
parameters, so this takes seconds where the whole suite takes minutes.

    python -m simulations.explore --set hot.scale_down_stabilization_s=600 --seeds 1,2,3
    python -m simulations.explore --set long-tail.cold_start_cost_ratio=1 --entries mix --held-out

Each cell is GPU-hours / share of requests in SLO / requests that met a cold start / time per
output token (p95). Judge a change on several seeds: one seed moves single figures by up to 15%.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from autoscaler.config import ConfigError
from autoscaler.logs import configure_logging
from simulations.calibration import profile_named
from simulations.compare import TraceSpec, setups_for
from simulations.contenders import driver_for
from simulations.simulate import ModelResult, Slo, run
from simulations.suite import ENTRIES, standard_suite
from simulations.workload import WorkloadError

KINDS = ("hot", "long-tail", "batch")


def parse_settings(settings: Iterable[str]) -> dict[str, dict[str, Any]]:
    """KIND.FIELD=VALUE pairs by kind; VALUE is read as JSON (600, 0.5, null), else as text."""
    overrides: dict[str, dict[str, Any]] = {}
    for setting in settings:
        where, sep, raw = setting.partition("=")
        kind, dot, name = where.partition(".")
        if not (sep and dot and name) or kind not in KINDS:
            raise ConfigError(f"--set {setting!r}: expected KIND.FIELD=VALUE with KIND one of {', '.join(KINDS)}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        overrides.setdefault(kind, {})[name] = value
    return overrides


def explore(
    traces: list[str],
    slo: Slo,
    *,
    seeds: list[int],
    variants: Mapping[str, Mapping[str, Mapping[str, Any]]],
    slice_s: float | None = None,
) -> dict[tuple[str, str], list[ModelResult]]:
    """Results by (model, variant), one per seed."""
    rows: dict[tuple[str, str], list[ModelResult]] = {}
    for seed in seeds:
        specs = [TraceSpec.parse(trace) for trace in traces]
        setups = setups_for(specs, profile=profile_named("a100-8b"), seed=seed, slice_s=slice_s)
        for variant, overrides in variants.items():
            driver = driver_for("ours", setups, overrides=overrides)  # builds the config: a bad field fails here
            for result in run(setups, driver, policy="ours", seed=seed, slo=slo):
                rows.setdefault((result.model, variant), []).append(result)
    return rows


def cell(result: ModelResult) -> str:
    return (
        f"{result.gpu_hours:6.2f} / {result.slo_attainment:6.1%} / {result.cold_start_requests:4d} / "
        f"{result.tpot_p95_s * 1e3:3.0f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Our policy over the suite, at its defaults and with fields changed.")
    parser.add_argument("--set", action="append", default=[], metavar="KIND.FIELD=VALUE", help="a policy field for every model of KIND")
    parser.add_argument("--seeds", default="1", help="comma-separated seeds (default 1)")
    parser.add_argument("--entries", help="comma-separated suite entries (default: all)")
    parser.add_argument("--slice-s", type=float, help="simulate only the first SLICE_S seconds of each trace")
    parser.add_argument("--held-out", action="store_true", help="add the held-out long-tail clients beside the mix's hot load")
    args = parser.parse_args(argv)
    configure_logging(level="warning")
    try:
        seeds = _seeds(args.seeds)
        overrides = parse_settings(args.set)
        chosen = _entries(args.entries.split(",") if args.entries else list(ENTRIES), held_out=args.held_out)
        variants = {"defaults": {}, **({"changed": overrides} if overrides else {})}
        print(f"changed: {json.dumps(overrides)}" if overrides else "defaults only")
        print("cells: GPU-h / in SLO / cold-start requests / TPOT p95; one per seed " + ", ".join(map(str, seeds)))
        for name, (traces, slo) in chosen.items():
            for (model, variant), results in explore(traces, slo, seeds=seeds, variants=variants, slice_s=args.slice_s).items():
                print(f"{name:12s} {model[:34]:34s} {variant:9s} " + "   ".join(cell(r) for r in results), flush=True)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _seeds(text: str) -> list[int]:
    try:
        return [int(seed) for seed in text.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: expected comma-separated integers, such as 1,2,3") from None


def _entries(names: list[str], *, held_out: bool) -> dict[str, tuple[list[str], Slo]]:
    try:
        return standard_suite(names + (["held-out"] if held_out else []))
    except WorkloadError as err:
        raise ConfigError(str(err)) from None
    except ValueError as err:
        raise ConfigError(f"--entries: {err}") from None


if __name__ == "__main__":
    sys.exit(main())
