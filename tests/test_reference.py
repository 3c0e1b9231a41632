"""docs/configuration.md is generated from the config models, docs/reasons.md from the reason
codes' enum; each must say what its source says."""

from pathlib import Path

from autoscaler import reason_reference
from autoscaler.config import Config
from autoscaler.reference import render
from policies import ReasonCode

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
REASONS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "reasons.md"


def test_the_configuration_page_is_what_the_models_generate():
    assert PAGE.read_text() == render(), (
        "docs/configuration.md is stale: regenerate it with `.venv/bin/python -m autoscaler.reference > docs/configuration.md`"
    )


def test_every_setting_of_the_daemon_has_a_row():
    page = render()
    for name in Config.model_fields:
        assert f"`{name}" in page, name
    assert "`models[].policy.drain_deadline_s`" in page  # the batch kind, which the old README's table missed
    assert "`models[].policy.idle_timeout_s`" in page


def test_the_reasons_page_is_what_the_enum_generates():
    assert REASONS_PAGE.read_text() == reason_reference.render(), (
        "docs/reasons.md is stale: regenerate it with `.venv/bin/python -m autoscaler.reason_reference > docs/reasons.md`"
    )


def test_every_reason_code_has_a_row():
    page = reason_reference.render()
    for code in ReasonCode:
        assert f"| `{code}` | {code.description} |" in page, code
