"""Reason codes are one enum (policies/reasons.py): every code the product gives is a member,
written as one, and every member is given somewhere. Reads the sources; no server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from policies import Reason, ReasonCode

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = sorted([*(ROOT / "policies").rglob("*.py"), *(ROOT / "autoscaler").rglob("*.py")])


def product_source() -> str:
    return "\n".join(path.read_text() for path in PRODUCT)


@pytest.mark.parametrize("code", list(ReasonCode))
def test_a_code_is_its_own_name_with_a_one_line_description(code):
    assert code == code.name and str(code) == code.name and f"{code}" == code.name  # logs, labels, golden files
    assert code.description and "\n" not in code.description and code.description.endswith(".")


def test_no_reason_is_given_with_a_bare_string():
    """A code typed as a string literal escapes the enum: a typo would make a new metric label."""
    bare = re.findall(r'Reason\(\s*(f?"[^"]*")', product_source())
    assert not bare, bare


def test_every_code_is_given_somewhere_in_the_product():
    source = product_source()
    unused = [code for code in ReasonCode if f"ReasonCode.{code.name}" not in source]
    assert not unused, f"codes no step gives (remove them, or give them): {unused}"


def test_a_reason_reads_as_its_code_and_message():
    assert str(Reason(ReasonCode.AboveCap, "9 lowered to 5: max_replicas")) == "AboveCap: 9 lowered to 5: max_replicas"
