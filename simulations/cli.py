"""The lab's command line: closed-loop simulation of the daemon's policies and its peers'.

    python -m simulations simulate --trace SPEC[@KIND] ... [--policies ours,keda,...] [--out DIR]
    python -m simulations suite [--slice-s S] [--entries ...]     (the same as ./dev suite)

Lab code, not in the installed package: it runs from a checkout with the lab extra
(`pip install -e ".[lab]"`, which ./dev setup does) from the repository root. The product's
`autoscaler simulate` only names this entry point. As there, a user's mistake prints what is
wrong and exits 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autoscaler.config import ConfigError
from autoscaler.logs import configure_logging
from autoscaler.metrics.recorded import TraceError

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    from simulations.suite import SUITE_DESCRIPTION, SUITE_EXAMPLES, HelpFormatter, add_suite_arguments, positive_number, share_number

    parser = argparse.ArgumentParser(prog="python -m simulations", description="The autoscaler's lab: closed-loop simulation.",
                                     formatter_class=HelpFormatter)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    simulate = commands.add_parser(
        "simulate", help="closed-loop simulation: GPU-hours and latency per policy on request traces",
        description="Simulate a cluster serving the traces, one model per --trace, under each policy in turn, and "
                    "report GPU-hours, SLO attainment and latency per policy, with one plot per model.",
        epilog="examples:\n"
               "  python -m simulations simulate --trace azure-conv --out report/\n"
               "  python -m simulations simulate --trace servegen:m-large:sum:end=7200:scale=0.03 "
               "--trace servegen:m-large:client=40@long-tail --policies ours,keda --tuned",
        formatter_class=HelpFormatter)
    simulate.add_argument("--trace", action="append", required=True, metavar="SPEC[@KIND]",
                          help="azure-conv, azure-code, mooncake, servegen:MODEL:client=ID|top=N|sum[:start=S][:end=S][:scale=F], "
                               "or a .csv/.jsonl file; @long-tail for a long-tail model (default @hot); repeat for several models")
    simulate.add_argument("--policies", default="ours,keda,hpa,kpa,ray,oracle", help="comma-separated: ours,keda,hpa,kpa,ray,oracle")
    simulate.add_argument("--tuned", action="store_true", help="also run each peer with its main target swept to the cheapest that meets the SLO")
    simulate.add_argument("--profile", default="a100-8b", help="replica profile: a100-8b (an 8B model on an A100-40G) or burstgpt-1b (fitted on the bundled vLLM recording)")
    simulate.add_argument("--slo-wait-s", type=positive_number, default=2.0, help="queue wait a request may have")
    simulate.add_argument("--slo-ttft-s", type=positive_number, default=5.0, help="time to first token a request may have")
    simulate.add_argument("--slo-tpot-ms", type=positive_number, default=50.0, help="time per output token (after the first) a request may have, ms")
    simulate.add_argument("--slo-target", type=share_number, default=0.95, help="share of requests in SLO that tuning aims for, 0 to 1")
    simulate.add_argument("--seed", type=int, default=1, help="the seed tuning runs on, and of the cold starts and synthesized traces")
    simulate.add_argument("--held-out-seeds", default="", help="comma-separated seeds the choices are also reported on")
    simulate.add_argument("--out", type=Path, default=Path("simulation-report"),
                          help="directory for report.json, report.txt and one PNG per model")

    suite = commands.add_parser("suite", help="the standard suite and its report (./dev suite)",
                                description=SUITE_DESCRIPTION, epilog=SUITE_EXAMPLES, formatter_class=HelpFormatter)
    add_suite_arguments(suite)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "suite":
            from simulations.suite import run_suite

            return run_suite(args, parser=parser)
        configure_logging(level=args.log_level)
        return cmd_simulate(args)
    except (ConfigError, TraceError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE


def cmd_simulate(args: argparse.Namespace) -> int:
    from simulations.simulate import Slo
    from simulations.suite import simulate_and_report

    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    slo = Slo(queue_wait_s=args.slo_wait_s, ttft_s=args.slo_ttft_s, tpot_s=args.slo_tpot_ms / 1e3)
    simulate_and_report(args.trace, policies, profile_name=args.profile, seed=args.seed, slo=slo,
                        tuned=args.tuned, slo_target=args.slo_target, out=args.out,
                        held_out_seeds=tuple(int(part) for part in args.held_out_seeds.split(",") if part.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
