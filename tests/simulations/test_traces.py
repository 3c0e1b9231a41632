"""The traces shipped in simulations/traces: a clone alone has them, each file is accounted for
in SOURCES.md with its licence, and a run that lacks one blames the traces directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from simulations import workload
from simulations.calibration import RECORDING_FILES
from simulations.suite import ENTRIES, suite_files
from simulations.workload import WorkloadError, require_traces, resolve_traces_dir

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "simulations" / "traces"


def test_the_default_traces_directory_is_inside_the_repository(monkeypatch):
    monkeypatch.delenv(workload.TRACES_ENV, raising=False)
    assert resolve_traces_dir() == SHIPPED
    # Everything the suite and the calibration read is there, with no ../shared beside the clone.
    assert require_traces(list(RECORDING_FILES) + suite_files([*ENTRIES, "held-out"])) == SHIPPED


def test_every_shipped_trace_is_listed_in_sources_md_with_a_licence():
    sources = (SHIPPED / "SOURCES.md").read_text()
    table = [line for line in sources.splitlines() if line.startswith("| `")]
    files = sorted(p.relative_to(SHIPPED) for p in SHIPPED.rglob("*") if p.is_file())
    data = [f for f in files if f.parts[0] not in ("LICENSES",) and f.name != "SOURCES.md"]
    assert len(data) == 17
    for relative in data:
        folder = f"`{relative.parts[0]}/`"
        rows = [row for row in table if row.startswith(f"| {folder}")]
        assert rows, f"{relative}: its folder has no row in SOURCES.md"
        # A row names its file (or a brace pattern of its files), a commit and a licence text.
        stem = relative.name.split("_scale")[0] if relative.parts[0] == "vllm-burstgpt" else relative.name
        (row,) = [row for row in rows if stem in row]
        licence = row.split(" | ")[3]
        assert any(text in licence for text in ("CC-BY 4.0", "Apache-2.0", "MIT")), row
        named = [part for part in licence.split("`") if part.startswith("LICENSES/")]
        assert named and all((SHIPPED / text).is_file() for text in named), row


def test_a_missing_file_names_the_directory_where_it_came_from_and_every_gap(tmp_path, monkeypatch):
    (tmp_path / "azure-2023").mkdir()
    (tmp_path / "azure-2023" / "AzureLLMInferenceTrace_code.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n")
    monkeypatch.setenv(workload.TRACES_ENV, str(tmp_path))
    with pytest.raises(WorkloadError) as err:
        require_traces(suite_files(["azure-code", "mix"]))
    assert str(err.value) == (
        f"traces directory {tmp_path} (from $AUTOSCALER_TRACES) lacks servegen/servegen_clients_m-large_m-mid.tar.xz, "
        "azure-2023/AzureLLMInferenceTrace_conv.csv; it must hold the files simulations/traces/SOURCES.md lists"
    )


def test_the_suite_with_a_missing_trace_blames_the_traces_directory_not_a_flag(tmp_path):
    """Before: `--entries: .../servegen_clients_m-large_m-mid.tar.xz: no such file`, for a flag
    the user never passed, and a FileNotFoundError traceback for the calibration recording."""
    env = {**os.environ, workload.TRACES_ENV: str(tmp_path)}
    for entries in ("mix", "azure-code"):
        result = subprocess.run([sys.executable, "-m", "simulations.suite", "--entries", entries, "--slice-s", "60",
                                 "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"error: traces directory {tmp_path} (from $AUTOSCALER_TRACES) lacks vllm-burstgpt/")
        assert "--entries" not in result.stderr and "Traceback" not in result.stderr
        assert not (tmp_path / "out").exists()  # nothing run, nothing written
