"""Command line: run, replay, check-config.

    autoscaler run --config FILE [--dry-run] [--output table|json]
    autoscaler replay [--trace FILE] [--config FILE] [--output table|json] [--all] [--processes N]
    autoscaler check-config FILE

The closed-loop simulator is lab code (simulations/, run from a checkout), not part of this
package: `autoscaler simulate` only says how to run it.

A user's mistake (a bad config, trace or flag) prints what is wrong and exits 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import re
import signal
import socket
import sys
import threading
import typing
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import yaml
from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from autoscaler.bundled import bundled_config_path, bundled_trace_path
from autoscaler.config import (
    TICK_INTERVAL_MAX_S,
    TICK_INTERVAL_MIN_S,
    Config,
    ConfigError,
    load_config,
    parse_config,
    read_config,
    redacted_url,
)
from autoscaler.logs import configure_logging
from autoscaler.metrics.recorded import TraceError
from autoscaler.reference import allowed
from autoscaler.settings import Settings, leaf_fields

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 1


class Unavailable(Exception):
    """What the command needs could not be reached or holds nothing: not the user's mistake
    (exit 2), but no result either (exit 1)."""
# What `autoscaler simulate` prints: the simulator left the product for the lab, and a user who
# types the old command learns where it went in one line.
SIMULATE_MOVED = ("simulate: the closed-loop simulator is lab code, not part of the installed autoscaler; "
                  "from a checkout: pip install -e '.[lab]', then python -m simulations simulate --help")


def _whole_from_1_to_64(one_means: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not 1 <= value <= 64:
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed; from 1 ({one_means}) to 64")
        return value

    return parse


_processes = _whole_from_1_to_64("this process alone")


# The last instant a replay can print as a date: 9999-12-31T23:59:59Z.
LAST_INSTANT_S = 253_402_300_799.0
# Replay steps through every instant from start to end, holding them in memory at once: 10
# million ticks is 116 days at 1 s or 3 years at 10 s. A trace spanning 1e12 s at 10 s would
# be 1e11 ticks, 745 GiB of instants alone.
MAX_REPLAY_TICKS = 10_000_000


def _instant(text: str) -> float:
    """An RFC 3339 time with its zone (2026-11-22T10:00:00Z) or seconds since the epoch."""
    try:
        value = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is neither an RFC 3339 time nor seconds since the epoch") from None
        if moment.tzinfo is None:
            # Read as this machine's local time it would replay another window on a machine in
            # another zone, without a word.
            raise argparse.ArgumentTypeError(f"{text!r} has no zone; add one, such as {text}Z (UTC) or {text}+01:00") from None
        return moment.timestamp()
    if not 0 <= value <= LAST_INSTANT_S:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not allowed; seconds since the epoch from 0 to {LAST_INSTANT_S:.0f} (9999-12-31T23:59:59Z)"
        )
    return value


def _step_s(text: str) -> float:
    """Replay's tick interval, within the bounds of the config's tick_interval_s it replaces."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not TICK_INTERVAL_MIN_S <= value <= TICK_INTERVAL_MAX_S:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not allowed; seconds from {TICK_INTERVAL_MIN_S:g} to {TICK_INTERVAL_MAX_S:g}, as tick_interval_s"
        )
    return value


_NOUNS = {int: "a whole number", float: "a number", str: "a name"}


def _add_settings_flags(run: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """One flag per setting (autoscaler.settings), in a group per sub-model; returns the
    leadership group, which the flags outside the model join."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for path, field in leaf_fields():
        where: argparse._ActionsContainer = run
        if len(path) > 1:
            model = Settings.model_fields[path[0]].annotation
            title = (model.__doc__ or path[0]).strip().splitlines()[0]
            where = groups.setdefault(path[0], run.add_argument_group(title))
        flag = "--" + path[-1].replace("_", "-")
        meaning = " ".join((field.description or "").split()).replace("%", "%%")
        if field.annotation is bool:
            where.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=meaning)
            continue
        help_text = f"{meaning} Default: {field.default!r}."
        choices = typing.get_args(field.annotation) if typing.get_origin(field.annotation) is typing.Literal else None
        where.add_argument(flag, choices=choices, type=None if choices else _setting_value(field),
                           default=argparse.SUPPRESS, metavar=None if choices else _metavar(path[-1], field), help=help_text)
    return groups["leader"]


def _metavar(name: str, field: FieldInfo) -> str:
    return "SECONDS" if name.endswith("_s") else {int: "N", str: "NAME"}.get(field.annotation, "VALUE")


def _setting_value(field: FieldInfo) -> Callable[[str], object]:
    """Parses one flag's text as its field does, bounds included, so `--write-workers 0` is
    answered by argparse with what is allowed."""
    annotation = typing.Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
    adapter: TypeAdapter = TypeAdapter(annotation, config=ConfigDict(allow_inf_nan=False))
    bounds = allowed(field)
    noun = _NOUNS[field.annotation] + (f" {bounds}" if bounds else "")

    def parse(text: str) -> object:
        try:
            return adapter.validate_python(text)
        except ValidationError:
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed; {noun}") from None

    return parse


def _settings(args: argparse.Namespace) -> Settings:
    """The settings the flags given make, every other one at its default. Rules across flags
    (the lease timings' order, writes inside the renew margin) are answered here, by flag."""
    given = vars(args)
    nested: dict[str, dict[str, object]] = {}
    top: dict[str, object] = {}
    for path, _ in leaf_fields():
        if path[-1] in given:
            (nested.setdefault(path[0], {}) if len(path) > 1 else top)[path[-1]] = given[path[-1]]
    try:
        return Settings.model_validate({**top, **nested})
    except ValidationError as err:
        names = "|".join(path[-1] for path, _ in leaf_fields())
        problems = [re.sub(rf"\b({names})\b", lambda m: "--" + m.group(1).replace("_", "-"), e["msg"].removeprefix("Value error, "))
                    for e in err.errors()]
        raise ConfigError("; ".join(problems)) from None


def _replay_ticks(*, start_s: float, end_s: float, step_s: float, span: str) -> None:
    """Refuses a replay of more than MAX_REPLAY_TICKS before it allocates them; `span` names
    where the start and end came from."""
    ticks = math.floor((end_s - start_s) / step_s) + 1
    if ticks > MAX_REPLAY_TICKS:
        raise ConfigError(
            f"{span} spans {end_s - start_s:.6g} s: {ticks:,} ticks at --step-s {step_s:g}; "
            f"at most {MAX_REPLAY_TICKS:,}: replay a shorter span or pass a larger --step-s"
        )


_RUN_EXAMPLES = """\
examples:
  autoscaler run --config /etc/llm-autoscaler/config.yaml --leader-elect      in a pod (deploy/deployment.yaml)
  autoscaler run --config deploy/examples/config.yaml --dry-run --once -o json  from a laptop, through $KUBECONFIG

The cluster is found as controller-runtime finds it: --kubeconfig, else $KUBECONFIG, else the
pod's service account, else ~/.kube/config. With --once the exit status is 1 when the tick
could not read Prometheus or the cluster.
"""
_REPLAY_EXAMPLES = """\
examples:
  autoscaler replay                                   the bundled BurstGPT trace and config
  autoscaler replay --trace rec.csv.gz --config c.yaml --all -o json
  autoscaler replay --prometheus http://prometheus:9090 --start 2026-11-22T08:00:00Z --end 2026-11-22T12:00:00Z --config c.yaml
"""
_CHECK_EXAMPLES = """\
examples:
  autoscaler check-config deploy/examples/config.yaml
  autoscaler check-config deploy/configmap.yaml       a ConfigMap manifest holding config.yaml
"""


_RBAC_EXAMPLES = """\
examples:
  autoscaler rbac deploy/configmap.yaml | kubectl apply -f -
  autoscaler rbac config.yaml -n autoscaling --service-account llm-autoscaler
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autoscaler", description="Queue-depth autoscaler for LLM inference on Kubernetes.")
    # Global flags go before or after the command, as kubectl's do; the command's copy has no
    # default, so it never overwrites one given before the command.
    levels = ["debug", "info", "warning", "error"]
    parser.add_argument("--log-level", default="info", choices=levels, help="default: info")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", default=argparse.SUPPRESS, choices=levels, help="default: info")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, examples: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".", epilog=examples,
                                   parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter)

    run = command("run", "run the control loop against Prometheus and the cluster", _RUN_EXAMPLES)
    run.add_argument("--config", type=Path, required=True, help="the YAML config, or a ConfigMap manifest holding it")
    run.add_argument("--dry-run", action="store_true", help="decide and print, never write to the cluster")
    run.add_argument("-o", "--output", choices=["table", "json"], default="table", help="how dry-run prints decisions; default: table")
    run.add_argument("--kubeconfig", type=Path, help="this kubeconfig; default: $KUBECONFIG, else the pod's service account, else ~/.kube/config")
    run.add_argument("--context", help="the kubeconfig context to use; default: its current-context")
    run.add_argument("--once", action="store_true", help="run one tick and exit: 1 when it could not read Prometheus or the cluster")
    ha = _add_settings_flags(run)
    ha.add_argument("-n", "--namespace", help="the daemon's own namespace, home of its Lease and state ConfigMap; "
                    "default: the pod's (service-account namespace file or POD_NAMESPACE)")
    ha.add_argument("--identity", help="this replica's name in the Lease; default: POD_NAME, else host name and pid")

    replay = command("replay", "replay a recorded metric trace through the controller", _REPLAY_EXAMPLES)
    replay.add_argument("--trace", type=Path, help="native CSV(.gz) or query_range JSON; default: the bundled BurstGPT trace")
    replay.add_argument("--config", type=Path, help="default: the bundled replay config")
    replay.add_argument("--prometheus", help="replay from this live Prometheus over --start..--end instead of a file")
    replay.add_argument("--start", type=_instant, help="with --prometheus: the first instant (RFC 3339 or epoch seconds)")
    replay.add_argument("--end", type=_instant, help="with --prometheus: the last instant")
    replay.add_argument("--step-s", type=_step_s, help="seconds between ticks; default: the config's tick_interval_s")
    replay.add_argument("-o", "--output", choices=["table", "json"], default="table", help="default: table")
    replay.add_argument("--all", action="store_true", help="print every decision, not only those that change a count")
    replay.add_argument(
        "--processes",
        type=_processes,
        default=1,
        help="replay a trace file's models in this many worker processes, 1 to 64 (models sharing a GPU pool stay "
        "together): the same decisions and summary, printed once all are done; default 1",
    )

    check = command("check-config", "validate a config and print every model's effective settings", _CHECK_EXAMPLES)
    check.add_argument("config", type=Path)

    rbac = command("rbac", "print the Roles the config's namespaces need, writes narrowed to its targets", _RBAC_EXAMPLES)
    rbac.add_argument("config", type=Path, help="the YAML config, or a ConfigMap manifest holding it")
    rbac.add_argument("-n", "--namespace", default="llm-autoscaler",
                      help="the daemon's own namespace, where its ServiceAccount lives; default: llm-autoscaler")
    rbac.add_argument("--service-account", default="llm-autoscaler", help="default: llm-autoscaler")

    # Not listed in --help: the command is gone from the product, and this entry only answers a
    # user who still types it (every argument is left to main(), which prints SIMULATE_MOVED).
    commands.add_parser("simulate", add_help=False)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llm-queue-autoscaler")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # parse_args() is parse_known_args() that rejects what is left over; `simulate` takes any
    # arguments (the old command's flags) to answer them all with the same line.
    args, unknown = parser.parse_known_args(argv)
    if args.command == "simulate":
        print(f"error: {SIMULATE_MOVED}", file=sys.stderr)
        return EXIT_USAGE
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    configure_logging(level=args.log_level)
    try:
        commands = {"run": cmd_run, "replay": cmd_replay, "check-config": cmd_check_config, "rbac": cmd_rbac}
        return commands[args.command](args)
    except (ConfigError, TraceError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except Unavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        # Ctrl-C outside the loop's own handler (start-up, a replay): one line, and the
        # shell's convention for a SIGINT, 128 + 2.
        print("interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:
        # The reader went away (`autoscaler replay | head`): stop quietly, as other tools do.
        # stdout now points nowhere, so the interpreter's last flush must not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def cmd_check_config(args: argparse.Namespace) -> int:
    data, source = read_config(args.config)
    config = parse_config(data, source=source)
    effective = config.model_dump(mode="json")
    effective["prometheus"]["url"] = redacted_url(config.prometheus.url)
    for model, dumped in zip(config.models, effective["models"]):
        if model.policy.kind == "long-tail":
            dumped["policy"]["effective_idle_timeout_s"] = model.policy.effective_idle_timeout_s
    print(f"# {source}: valid, {len(config.models)} model(s); effective settings with every default filled in")
    print(yaml.safe_dump(effective, sort_keys=False), end="")
    return 0


def cmd_rbac(args: argparse.Namespace) -> int:
    from autoscaler.rbac import managed_roles

    data, source = read_config(args.config)
    config = parse_config(data, source=source)
    documents = managed_roles(config, service_account=args.service_account, home=args.namespace)
    print(f"# {source}: the Roles of the namespaces its models live in (autoscaler/rbac.py says why)")
    print(yaml.safe_dump_all(documents, sort_keys=False), end="")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from autoscaler.metrics.prometheus import PrometheusSource
    from autoscaler.metrics.recorded import RecordedSource, load_trace
    from autoscaler.output import DecisionPrinter
    from autoscaler.replay import format_summary, replay, replay_sharded

    config = load_config(args.config or bundled_config_path())
    step_s = args.step_s or config.tick_interval_s
    trace = None
    if not args.prometheus and (args.start is not None or args.end is not None):
        raise ConfigError("--start and --end apply only with --prometheus; a trace file is replayed from its first sample to its last")
    if args.prometheus:
        if args.trace:
            raise ConfigError("--trace and --prometheus are exclusive: replay reads one or the other")
        if args.processes > 1:
            raise ConfigError("--processes shares out a trace file's models; a --prometheus replay runs in one process")
        if args.start is None or args.end is None or args.end <= args.start:
            raise ConfigError("--prometheus needs --start and --end, with --end after --start")
        url = args.prometheus.rstrip("/")
        if not re.match(r"^https?://[^\s/]+", url):
            raise ConfigError(f"--prometheus {args.prometheus!r}: not a URL; give its scheme, such as http://{args.prometheus}")
        settings = config.prometheus.model_copy(update={"url": url})
        source = PrometheusSource(config.model_copy(update={"prometheus": settings}), count_pods=False)
        start_s, end_s = args.start, args.end
    else:
        trace = load_trace(args.trace or bundled_trace_path(), config)
        unknown = {m.name for m in config.models} - trace.names
        if unknown == {m.name for m in config.models}:
            raise TraceError(f"the trace names none of the configured models ({', '.join(sorted(unknown))}); it has: {', '.join(sorted(trace.names))}")
        source = RecordedSource(trace, config)
        start_s, end_s = trace.start_s, trace.end_s
    _replay_ticks(start_s=start_s, end_s=end_s, step_s=step_s,
                  span="--start..--end" if args.prometheus else f"the trace {args.trace or 'bundled'}")
    if args.prometheus:  # after every check of the flags: asking Prometheus is the slow one
        problem = source.history_problem(start_s=start_s, end_s=end_s)
        if problem is not None:
            raise Unavailable(f"--prometheus {redacted_url(source.url)}: {problem}")
    initial = {m.name: _initial_replicas(m, trace, start_s) for m in config.models}

    printer = DecisionPrinter(sys.stdout, fmt=args.output, clock_format="relative" if trace else "iso")

    def show(outcome) -> None:
        if args.all or (outcome.decision is not None and outcome.decision.direction != "hold"):
            printer.print(outcome)

    span = dict(start_s=start_s, end_s=end_s, step_s=step_s, initial=initial)
    if args.processes > 1:
        result, kept = replay_sharded(config, trace, processes=args.processes, keep="all" if args.all else "changes", **span)
        for outcome in kept:
            printer.print(outcome)
    else:
        result = replay(config, source, trace=trace, on_outcome=show, **span)
    if args.output == "table":
        print()
        print(format_summary(result))
    return 0


def _initial_replicas(model, trace, start_s: float) -> int:
    """The recorded count at the start when the trace has it, else the policy's warm floor."""
    recorded = trace.recorded_replicas(model.name) if trace else None
    sample = recorded.at(start_s) if recorded is not None else None
    count = int(sample[1]) if sample is not None else max(model.policy.min_replicas, 1)
    return min(max(count, model.policy.min_replicas), model.policy.max_replicas)


def cmd_run(args: argparse.Namespace) -> int:
    from autoscaler.clock import SystemClock
    from autoscaler.controller import Controller
    from autoscaler.daemon import run_loop, stop_on_signals
    from autoscaler.failover import FailoverController
    from autoscaler.leader import LeaseElector
    from autoscaler.metrics.prometheus import PrometheusSource
    from autoscaler.nodes import NodeCapacity
    from autoscaler.output import DecisionPrinter
    from autoscaler.reload import ReloadingController
    from autoscaler.state_store import ConfigMapStateStore
    from autoscaler.targets import unfenced
    from autoscaler.targets.events import EventSender
    from autoscaler.targets.kubernetes import KubernetesTargets
    from autoscaler.targets.recording import DryRunTargets
    from autoscaler.targets.watching import WatchCache
    from autoscaler.telemetry import Telemetry

    settings = _settings(args)
    config = load_config(args.config)
    timings = settings.leader
    clock = SystemClock()
    telemetry = Telemetry(clock=clock, interval_s=config.tick_interval_s, health_grace_s=settings.health_grace_s)
    # A port taken fails before any API call.
    server = _serve(telemetry, settings.metrics_port) if settings.metrics_port else None
    writes = not args.dry_run
    try:
        api_client = _api_client(args)
        namespace = _own_namespace(args) if writes and (timings.leader_elect or timings.state_configmap) else None
    except ConfigError:
        if server is not None:
            server.shutdown()
            server.server_close()
        raise
    cache = WatchCache(api_client, clock=clock, settings=settings.watch, api=settings.api)
    events = EventSender(api_client, capacity=settings.events.events_queue_size, api=settings.api, on_dropped=telemetry.event_dropped)
    elector = None
    if writes and timings.leader_elect:
        elector = LeaseElector(api_client, namespace=namespace, name=timings.lease_name, identity=_identity(args),
                               timings=timings, api=settings.api, on_change=lambda leading: telemetry.leader.set(int(leading)))
        telemetry.leader.set(0)

    # Asked right before each write: the clock read then, not the tick's `now`, which may be
    # seconds old by a late write of a long tick.
    fence = unfenced if elector is None else (lambda: elector.is_leader(now=clock.now()))

    def build(config: Config) -> Controller:
        cache.follow(config.namespaces)  # a reloaded config may add or drop namespaces
        targets = KubernetesTargets(config, api_client, cache=cache, events=events, api=settings.api, fence=fence)
        if args.dry_run:
            targets = DryRunTargets(targets)
        return Controller(
            config,
            metrics=PrometheusSource(config, on_error=telemetry.prometheus_error),
            targets=targets,
            pools=NodeCapacity(config, api_client, api=settings.api),
            write_workers=1 if args.dry_run else settings.write_workers,  # a dry run writes nothing
        )

    store = (
        ConfigMapStateStore(api_client, namespace=namespace, name=timings.state_configmap, api=settings.api,
                            refresh_s=timings.state_refresh_s)
        if namespace and timings.state_configmap else None
    )
    controller = FailoverController(
        ReloadingController(args.config, build, on_rejected=telemetry.config_rejections.inc), leadership=elector, store=store,
        on_refused=telemetry.state_refused, timings=timings, fence=fence,
    )
    printer = DecisionPrinter(sys.stdout, fmt=args.output)

    def after_tick(outcomes, duration_s: float) -> None:
        telemetry.record_tick(outcomes, duration_s=duration_s)
        if args.dry_run:
            for outcome in outcomes:
                printer.print(outcome)
            sys.stdout.flush()

    stop = threading.Event()
    stop_on_signals(stop)
    election_stop = threading.Event()
    election = None
    if elector is not None:
        election = threading.Thread(target=elector.run, kwargs={"clock": clock, "stop": election_stop}, name="leader-election")
        election.start()
        # The first round before the first tick: a replica that starts as leader acts at once.
        elector.first_round.wait(timeout=timings.retry_period_s + 10)
    # The first tick waits for the first list of each namespace; one that does not come within
    # a tick's time is skipped until it does.
    cache.wait_synced(timeout_s=config.tick_interval_s)
    try:
        ticks = run_loop(_EventsAfterTicks(controller, events), clock=clock, interval_s=config.tick_interval_s, stop=stop,
                         on_outcomes=after_tick, max_ticks=1 if args.once else None)
    finally:
        cache.stop()
        # Before the Lease goes: the Events of the last tick's writes, within the grace period.
        events.stop(timeout_s=settings.events.events_flush_s)
        if election is not None:  # hand the Lease over at once: the standby need not wait it out
            election_stop.set()
            election.join(timeout=timings.retry_period_s + 10)
        if server is not None:
            server.shutdown()
    if args.once and ticks and telemetry.last_tick_problems:
        # One tick that could not see is no answer: a script checking a config against a
        # cluster must not read "every model skipped" as success.
        where = f"Prometheus {redacted_url(config.prometheus.url)}, Kubernetes API {api_client.configuration.host}"
        raise Unavailable(f"--once: {'; '.join(telemetry.last_tick_problems)} ({where})")
    return 0


class _EventsAfterTicks:
    """The controller, whose ticks hold the Events they queue until their writes are done, so
    that Events never stand between a tick's writes at the API server (targets/events.py)."""

    def __init__(self, controller, events) -> None:
        self._controller, self._events = controller, events

    def tick(self, *, now: float):
        with self._events.held():
            return self._controller.tick(now=now)


def _own_namespace(args: argparse.Namespace) -> str:
    if args.namespace:
        return args.namespace
    token_namespace = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    if token_namespace.is_file():
        return token_namespace.read_text().strip()
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    raise ConfigError(
        "--namespace: not given, and not running in a pod (no service-account namespace file, no POD_NAMESPACE); "
        "it names where the Lease and the state ConfigMap live (or pass --state-configmap '' without --leader-elect)"
    )


def _identity(args: argparse.Namespace) -> str:
    return args.identity or os.environ.get("POD_NAME") or f"{socket.gethostname()}_{os.getpid()}"


def _serve(telemetry, port: int):
    from autoscaler.telemetry import serve

    try:
        return serve(telemetry, port=port)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise ConfigError(f"--metrics-port {port}: already in use on this machine; pass a free port, or 0 to serve none") from None
        if err.errno == errno.EACCES:
            raise ConfigError(f"--metrics-port {port}: not allowed for this user (ports below 1024 need privileges); pass 1024 or above") from None
        raise ConfigError(f"--metrics-port {port}: cannot serve there: {err.strerror}") from None


def _api_client(args: argparse.Namespace):
    """The cluster, found as controller-runtime's GetConfig finds it: --kubeconfig, else
    $KUBECONFIG (a list of files, merged as kubectl merges them), else the pod's service
    account, else ~/.kube/config. The in-cluster account comes before the home directory: a
    daemon's pod is its identity, whatever file an image may carry."""
    from kubernetes import client, config as kube_config

    in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    home = Path("~/.kube/config").expanduser()
    if args.kubeconfig:
        files, source = [args.kubeconfig], "--kubeconfig"
    elif os.environ.get("KUBECONFIG"):
        files, source = [Path(f) for f in os.environ["KUBECONFIG"].split(os.pathsep) if f], "$KUBECONFIG"
    elif in_cluster:
        files, source = [], "the pod's service account"
    elif home.is_file():
        files, source = [home], str(home)
    else:
        raise ConfigError(
            "no cluster to talk to: no --kubeconfig, no $KUBECONFIG, not in a pod (no KUBERNETES_SERVICE_HOST) "
            f"and no {home}; pass --kubeconfig FILE"
        )
    contexts = [name for path in files for name in _check_kubeconfig(path, source=source)]
    if args.context and not files:
        raise ConfigError(f"--context {args.context}: a context is chosen in a kubeconfig, and {source} has none")
    if args.context and args.context not in contexts:
        raise ConfigError(f"--context {args.context}: no such context in {os.pathsep.join(map(str, files))}; it has: {', '.join(contexts) or 'none'}")
    try:
        if files:
            return kube_config.new_client_from_config(config_file=os.pathsep.join(map(str, files)), context=args.context)
        kube_config.load_incluster_config()
        return client.ApiClient()
    except (kube_config.ConfigException, OSError) as err:
        raise ConfigError(f"cannot reach the cluster through {source}: {err}") from None


def _check_kubeconfig(path: Path, *, source: str) -> list[str]:
    """The names of its contexts. Parsed here, so that a kubeconfig that is missing or not YAML
    is named as such: the client library lets the parser's exception through, and names no file."""
    where = f"{source} {path}" if source != str(path) else str(path)
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"{where}: cannot read it: {err.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not a text file; a kubeconfig is YAML") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{where}: not valid YAML{at}: {getattr(err, 'problem', None) or err}") from None
    contexts = loaded.get("contexts") if isinstance(loaded, dict) else None
    return [c["name"] for c in contexts or [] if isinstance(c, dict) and isinstance(c.get("name"), str)]


if __name__ == "__main__":
    sys.exit(main())
