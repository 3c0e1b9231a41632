"""The daemon's settings (autoscaler/settings.py) and the flags of `autoscaler run` made from
them: one definition each, and the relation between them that keeps a deposed leader's write
from landing after the new leader's. No server: these are the model and the parser."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from autoscaler.cli import _settings, build_parser
from autoscaler.config import ConfigError
from autoscaler.settings import ApiSettings, LeaderSettings, Settings, leaf_fields


def parse_run(*flags: str) -> Settings:
    return _settings(build_parser().parse_args(["run", "--config", "x.yaml", *flags]))


def test_every_setting_is_one_flag_with_its_own_name():
    names = [path[-1] for path, _ in leaf_fields()]
    assert len(names) == len(set(names)), "two settings would share a flag"
    flags = {option for action in build_parser()._subparsers._group_actions[0].choices["run"]._actions
             for option in action.option_strings}
    assert {"--" + name.replace("_", "-") for name in names} <= flags


def test_flags_not_given_leave_the_models_defaults():
    assert parse_run() == Settings()


@pytest.mark.parametrize(
    ("flags", "path", "value"),
    [
        (["--api-read-timeout-s", "2.5"], ("api", "api_read_timeout_s"), 2.5),
        (["--conflict-retries", "5"], ("api", "conflict_retries"), 5),
        (["--watch-scope", "cluster"], ("watch", "watch_scope"), "cluster"),
        (["--watch-max-stale-s", "90"], ("watch", "watch_max_stale_s"), 90.0),
        (["--events-queue-size", "10"], ("events", "events_queue_size"), 10),
        (["--leader-elect"], ("leader", "leader_elect"), True),
        (["--state-configmap", ""], ("leader", "state_configmap"), ""),
        (["--metrics-port", "0"], ("metrics_port",), 0),
        (["--write-workers", "8"], ("write_workers",), 8),
    ],
)
def test_a_flag_sets_its_setting(flags, path, value):
    settings = parse_run(*flags)
    for part in path:
        settings = getattr(settings, part)
    assert settings == value


def test_the_defaults_keep_every_api_request_inside_the_renew_margin():
    """client-go's 15 s lease and 10 s renew deadline leave 5 s between the last instant a
    leader acts and the first a standby may: one request sent just before the deadline must
    be over by then, answered or given up."""
    defaults = Settings(leader=LeaderSettings(leader_elect=True))
    assert defaults.api.longest_request_s < defaults.leader.renew_margin_s


def test_a_request_that_could_outlast_the_renew_margin_is_refused_with_leader_election():
    with pytest.raises(ValidationError, match=r"\(4 s\) must be less than lease_duration_s - renew_deadline_s \(1 s\)"):
        Settings(leader=LeaderSettings(leader_elect=True, lease_duration_s=3, renew_deadline_s=2, retry_period_s=0.5))
    # Without an election nobody else writes: the same timings are fine.
    Settings(leader=LeaderSettings(lease_duration_s=3, renew_deadline_s=2, retry_period_s=0.5))
    Settings(api=ApiSettings(api_connect_timeout_s=0.3, api_read_timeout_s=0.6),
             leader=LeaderSettings(leader_elect=True, lease_duration_s=3, renew_deadline_s=2, retry_period_s=0.5))


def test_a_rule_across_flags_is_answered_in_the_flags_names():
    with pytest.raises(ConfigError) as raised:
        parse_run("--leader-elect", "--lease-duration-s", "3", "--renew-deadline-s", "2", "--retry-period-s", "0.5")
    assert str(raised.value) == (
        "--api-connect-timeout-s + --api-read-timeout-s (4 s) must be less than --lease-duration-s - --renew-deadline-s "
        "(1 s) with --leader-elect: otherwise a deposed leader's write can land after the new leader's"
    )


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--api-read-timeout-s", "inf"], "argument --api-read-timeout-s: 'inf' is not allowed; a number > 0, <= 300"),
        (["--api-connect-timeout-s", "0"], "argument --api-connect-timeout-s: '0' is not allowed; a number > 0, <= 60"),
        (["--conflict-retries", "1.5"], "argument --conflict-retries: '1.5' is not allowed; a whole number >= 1, <= 10"),
        (["--lease-name", ""], "argument --lease-name: '' is not allowed; a name at least 1"),
    ],
)
def test_a_bad_flag_value_names_the_flag_the_value_and_what_is_allowed(flags, expected, capsys):
    with pytest.raises(SystemExit) as raised:
        parse_run(*flags)
    assert raised.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"autoscaler run: error: {expected}"


def test_the_watch_backoff_cannot_start_above_its_ceiling():
    with pytest.raises(ConfigError, match=r"--watch-backoff-first-s \(40\) must not exceed --watch-backoff-max-s \(30\)"):
        parse_run("--watch-backoff-first-s", "40")
