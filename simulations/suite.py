"""The standard suite, and `python -m simulations simulate` for one run.

    ./dev suite                 # the full suite: every bundled trace alone, and a hot + long-tail mix
    ./dev suite --slice-s 300   # the same on a 5-minute slice of each (what the tests run)
    ./dev suite --entries mix,held-out   # some entries; held-out is the mix with the clients kept aside

Writes report.txt (the side-by-side table), report.json and one PNG per model to --out, and
prints its own speed. The suite's workloads:
- azure-code, azure-conv: two production services, one hour each (Splitwise, ISCA 2024);
- mooncake: an hour-long trace of long prompts (Mooncake, FAST 2025);
- servegen-hot: every m-large client summed, thinned to 3% (about 6 req/s), two hours;
- mix: the same hot model thinned to 2%, beside three long-tail ServeGen clients, six hours
  (ServeGen, arXiv 2505.09999); see long_tail_clients() for how they are chosen. The next
  three are kept aside for policy work that must be checked on clients it was not developed on.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from autoscaler.config import ConfigError
from autoscaler.logs import configure_logging
from simulations.calibration import RECORDING_FILES, burstgpt_profile, profile_named, validate
from simulations.compare import TraceSpec, benchmark, length_mismatch, setups_for
from simulations.contenders import POLICIES
from simulations.peers.oracle import work_bound_gpu_hours
from simulations.report import format_summary, format_table, standing_record, write_json, write_plots
from simulations.simulate import Slo
from simulations.workload import (
    AZURE_CODE,
    AZURE_CONV,
    MOONCAKE,
    SERVEGEN_ARCHIVE,
    WorkloadError,
    list_servegen_clients,
    load_servegen,
    require_traces,
    resolve_traces_dir,
)

HOT_SUM = "servegen:m-large:sum"


def long_tail_clients(count: int = 3, *, held_out: bool = False, window_s: float = 21600.0) -> list[str]:
    """Quiet m-large clients that are long-tail inside the simulated window: a mean rate under
    0.2 req/s over the 14 days, and within [0, window_s) at least 20 requests with at least
    half of the 10-minute windows idle. The first `count` by client id are the suite's; the
    next `count` are held out."""
    archive = resolve_traces_dir() / SERVEGEN_ARCHIVE
    quiet = [c.client for c in list_servegen_clients(archive, "m-large") if 0 < c.mean_rate_rps < 0.2]
    chosen: list[str] = []
    for client in sorted(quiet, key=lambda c: (len(c), c)):
        arrivals = load_servegen(archive, model="m-large", clients=[client], seed=0, end_s=window_s).arrival_s
        windows = np.bincount((arrivals // 600).astype(int), minlength=int(window_s // 600))
        if len(arrivals) >= 20 and (windows == 0).mean() >= 0.5:
            chosen.append(client)
        if len(chosen) == 2 * count:
            break
    return chosen[count:] if held_out else chosen[:count]


# Interactive traffic: a request may wait 2 s for a replica and get its first token in 5 s.
# Mooncake serves long contexts (median prompt 11,587 tokens, 99th percentile 66,456): the
# prefill alone of a 66k-token prompt takes 10 s on the suite's replica, so its TTFT target
# is 15 s; at 5 s no policy, the oracle included, could keep more than 84% in SLO.
INTERACTIVE = Slo(queue_wait_s=2.0, ttft_s=5.0)
LONG_CONTEXT = Slo(queue_wait_s=2.0, ttft_s=15.0)


ENTRIES = ("azure-code", "azure-conv", "mooncake", "servegen-hot", "mix")

# The files each entry reads, relative to the traces directory. ServeGen has no token counts:
# they are sampled from the Azure conv trace (workload.load_servegen), so its entries need both.
ENTRY_FILES = {
    "azure-code": (AZURE_CODE,),
    "azure-conv": (AZURE_CONV,),
    "mooncake": (MOONCAKE,),
    "servegen-hot": (SERVEGEN_ARCHIVE, AZURE_CONV),
    "mix": (SERVEGEN_ARCHIVE, AZURE_CONV),
    "held-out": (SERVEGEN_ARCHIVE, AZURE_CONV),
}


def suite_files(names: Iterable[str]) -> list[str]:
    """The trace files the entries `names` read; a ValueError for an unknown entry."""
    names = list(names)
    unknown = [name for name in names if name not in ENTRY_FILES]
    if unknown:
        raise ValueError(f"{', '.join(unknown)} unknown; choose from {', '.join(ENTRY_FILES)}")
    return [relative for name in names for relative in ENTRY_FILES[name]]


def standard_suite(names: Iterable[str] = ENTRIES) -> dict[str, tuple[list[str], Slo]]:
    """The suite's entries by name, in the order asked; "held-out" is the mix's hot load beside
    the long-tail clients kept aside. Only the entries asked for are built: choosing the
    ServeGen clients reads the whole archive."""
    built = {
        "azure-code": lambda: (["azure-code"], INTERACTIVE),
        "azure-conv": lambda: (["azure-conv"], INTERACTIVE),
        "mooncake": lambda: (["mooncake"], LONG_CONTEXT),
        "servegen-hot": lambda: ([f"{HOT_SUM}:end=7200:scale=0.03"], INTERACTIVE),
        "mix": lambda: (_mix(long_tail_clients()), INTERACTIVE),
        "held-out": lambda: (_mix(long_tail_clients(held_out=True)), INTERACTIVE),
    }
    names = list(names)
    require_traces(suite_files(names))
    return {name: built[name]() for name in names}


def _mix(clients: list[str]) -> list[str]:
    return [f"{HOT_SUM}:end=21600:scale=0.02"] + [f"servegen:m-large:client={client}:end=21600@long-tail" for client in clients]


def simulate_and_report(
    traces: list[str],
    policies: list[str],
    *,
    profile_name: str,
    seed: int,
    slo: Slo,
    tuned: bool,
    slo_target: float,
    out: Path,
    slice_s: float | None = None,
    held_out_seeds: tuple[int, ...] = (),
) -> list:
    """Tune on `seed`, report on it and on `held_out_seeds`: report.txt has the tuning seed's
    full table, then the summary (summary.md, the same as markdown) over the held-out seeds."""
    if not policies:
        raise ConfigError(f"--policies: none given; choose from {', '.join(POLICIES)}")
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise ConfigError(f"--policies: {', '.join(unknown)} unknown; choose from {', '.join(POLICIES)}")
    try:
        profile = profile_named(profile_name)
        specs = [TraceSpec.parse(t) for t in traces]
        setups = setups_for(specs, profile=profile, seed=seed, slice_s=slice_s)
        held_out = {other: setups_for(specs, profile=profile, seed=other, slice_s=slice_s) for other in held_out_seeds}
    except (ValueError, WorkloadError) as err:
        raise ConfigError(str(err)) from None
    mismatch = length_mismatch(setups)
    if mismatch:
        print(mismatch, file=sys.stderr)
    make_out(out)
    print(profile.describe(), file=sys.stderr)
    standings = benchmark(setups, policies, seed=seed, slo=slo, tuned=tuned, slo_target=slo_target, held_out=held_out)
    results = [standing.tuning for standing in standings]
    bounds = {
        setup.name: work_bound_gpu_hours(setup.workload.prompt_tokens, setup.workload.output_tokens, setup.profile)
        for setup in setups
    }
    table = format_table(results)
    summary = format_summary(standings, bounds=bounds, slo_target=slo_target, held_out_seeds=held_out_seeds)
    header = f"replica profile: {profile.describe()}\nSLO: {slo.describe()}; tuned on seed {seed}\n"
    (out / "report.txt").write_text(header + table + "\n\n" + summary + "\n")
    (out / "summary.md").write_text(summary + "\n")
    write_json(out / "report.json", results, slo=slo,
               meta={"profile": profile.describe(), "seed": seed, "held_out_seeds": list(held_out_seeds), "traces": traces,
                     "work_bound_gpu_hours": bounds, "standings": [standing_record(s) for s in standings]})
    plots = write_plots(out, results, slo=slo)
    print(header + table + "\n\n" + summary)
    print(f"wrote {out}/: report.txt, summary.md, report.json and {len(plots)} plot{'s' if len(plots) != 1 else ''} "
          f"({', '.join(p.name for p in plots)})")
    return results


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Each flag's default shown, unless it has none (None) or is a switch (False); the
    examples kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


SUITE_DESCRIPTION = ("Run every policy on the standard workloads (each bundled trace alone, and a hot + long-tail mix) "
                     "and write one folder of reports and plots per entry.")
SUITE_EXAMPLES = ("examples:\n"
                  "  ./dev suite                     the full suite, into simulation-report/\n"
                  "  ./dev suite --slice-s 300       the first 5 minutes of each trace, into simulation-report/slice-300s/\n"
                  "  ./dev suite --entries mix --no-tuned")


def add_suite_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("simulation-report"),
                        help="directory for one folder of results per entry; a --slice-s run writes under OUT/slice-<S>s/")
    parser.add_argument("--slice-s", type=positive_number, help="simulate only the first SLICE_S seconds of each trace")
    parser.add_argument("--no-tuned", action="store_true", help="skip the tuned sweeps of the peers")
    parser.add_argument("--seed", type=int, default=1, help="the seed tuning runs on, and of the cold starts and synthesized traces")
    parser.add_argument("--held-out-seeds", default="2,3", help="comma-separated seeds the tuned choices are reported on ('' for none)")
    parser.add_argument("--profile", default="a100-8b", help="replica profile: a100-8b or burstgpt-1b")
    parser.add_argument("--entries", default=",".join(ENTRIES),
                        help="comma-separated entries; also held-out: the mix with the held-out clients")


def make_out(out: Path) -> None:
    """The results folder, made before the run: a file in its place, or a folder that cannot be
    made, is the user's to fix, named before minutes of simulation, not after them."""
    existing = next(path for path in (out, *out.parents) if path.exists())
    if not existing.is_dir():
        what = "is a file" if existing == out else f"{existing} is a file"
        raise ConfigError(f"--out {out}: {what}; give a directory (made if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot make the directory: {err.strerror}") from None


def share_number(text: str) -> float:
    """argparse's type for a share of requests: above 0 and at most 1."""
    value = positive_number(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text!r} is a share: give a number above 0 and at most 1 (0.95 for 95%)")
    return value


def suite_out(out: Path, slice_s: float | None) -> Path:
    """Where a suite run writes: a sliced run in its own folder, so its reports never sit
    among (or overwrite) the full run's."""
    return out if slice_s is None else out / f"slice-{slice_s:g}s"


def positive_number(text: str) -> float:
    """argparse's type for a count of seconds or a share: finite and above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and np.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number greater than 0")
    return value


def run_suite(args: argparse.Namespace, *, parser: argparse.ArgumentParser) -> int:
    names = args.entries.split(",")
    try:
        # Every file the run reads, checked at once: the replica model is fitted on the
        # vllm-burstgpt recording whatever the entries.
        require_traces(list(RECORDING_FILES) + suite_files(names))
        suite = standard_suite(names)
    except WorkloadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        parser.error(f"--entries: {err}")
    configure_logging(level="warning")
    started = time.perf_counter()
    fitted = burstgpt_profile()
    print(f"calibration: {fitted.describe()}")
    for scale in (100, 500, 1000, 2000):
        check = validate(fitted, scale=scale)
        print(f"  check at scale {scale}: running MAE {check.running_mae:.1f} (recorded mean {check.recorded_running_mean:.0f}, "
              f"correlation {check.running_correlation:.2f}), waiting MAE {check.waiting_mae:.1f} (recorded mean {check.recorded_waiting_mean:.0f})")
    out = suite_out(args.out, args.slice_s)
    try:
        make_out(out)
        for name, (traces, slo) in suite.items():
            print(f"\n== {name}: {' + '.join(traces)}")
            simulate_and_report(traces, list(POLICIES), profile_name=args.profile, seed=args.seed, slo=slo,
                                tuned=not args.no_tuned, slo_target=0.95, out=out / name, slice_s=args.slice_s,
                                held_out_seeds=_seeds(args.held_out_seeds))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"\nsuite took {time.perf_counter() - started:.0f} s; results in {out}/ ({', '.join(suite)})")
    return 0


def _seeds(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev suite", description=SUITE_DESCRIPTION, epilog=SUITE_EXAMPLES,
                                     formatter_class=HelpFormatter)
    add_suite_arguments(parser)
    return run_suite(parser.parse_args(argv), parser=parser)


if __name__ == "__main__":
    sys.exit(main())
