"""simulations.explore: our policy over the suite with fields changed, beside its defaults."""

from __future__ import annotations

import pytest

from simulations.explore import explore, main, parse_settings
from simulations.suite import INTERACTIVE


def test_a_changed_field_reaches_every_model_of_its_kind_and_only_those():
    assert parse_settings(["hot.max_replicas=1", "long-tail.idle_timeout_s=null", "hot.kind_note=text"]) == {
        "hot": {"max_replicas": 1, "kind_note": "text"},
        "long-tail": {"idle_timeout_s": None},
    }
    rows = explore(
        ["azure-conv"], INTERACTIVE, seeds=[1, 2], slice_s=300.0,
        variants={"defaults": {}, "changed": {"hot": {"max_replicas": 1}}, "tail only": {"long-tail": {"max_replicas": 1}}},
    )
    (model,) = {name for name, _ in rows}
    defaults, changed, tail_only = (rows[model, variant] for variant in ("defaults", "changed", "tail only"))
    assert len(defaults) == 2  # one result per seed
    # azure-conv starts warm at several replicas; held at one, it costs a fraction of that.
    for d, c, t in zip(defaults, changed, tail_only):
        assert c.gpu_hours < d.gpu_hours / 2
        assert t.gpu_hours == d.gpu_hours  # a hot model ignores what is set for long-tail ones


def test_the_cli_prints_both_variants_per_seed(capsys):
    assert main(["--set", "hot.max_replicas=1", "--entries", "azure-conv", "--slice-s", "120", "--seeds", "1,2"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("azure-conv")]
    assert [line.split()[2] for line in lines] == ["defaults", "changed"]
    assert all(line.count(" ms") == 2 for line in lines)  # a cell per seed


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--set", "hot=3"], "--set 'hot=3': expected KIND.FIELD=VALUE"),
        (["--set", "warm.max_replicas=3"], "KIND one of hot, long-tail, batch"),
        (["--seeds", "one"], "--seeds 'one': expected comma-separated integers"),
        (["--entries", "azure"], "--entries: azure unknown; choose from azure-code"),
        (["--set", "hot.tolerance=7", "--entries", "azure-conv", "--slice-s", "60"], "policy.tolerance: Input should be less than 1 (got 7)"),
    ],
)
def test_bad_flags_get_a_clear_error_and_no_run(argv, expected, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
