"""docs/configuration.md is generated from the config models; it must say what they say."""

from pathlib import Path

from autoscaler.config import Config
from autoscaler.reference import render

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


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
