"""The reason codes page, generated from the enum (policies/reasons.py).

Each code's meaning lives once, on its ReasonCode member; this renders them as Markdown, so
`docs/reasons.md` cannot list a code the policies do not give, nor miss one
(`tests/test_reference.py` fails when the page is stale). Regenerate it with:

    .venv/bin/python -m autoscaler.reason_reference > docs/reasons.md
"""

from __future__ import annotations

from policies.reasons import ReasonCode

_HEADER = """\
# Reason codes

Generated from `policies/reasons.py` by `python -m autoscaler.reason_reference`; do not edit by
hand (`tests/test_reference.py` fails when this page and the enum disagree).

Every decision carries its reasons in order, each a code and a message with the numbers that
made it. The code is what `llm_autoscaler_decisions_total{reason}` counts, what leads each reason
in the logs and in the message of a scaling's Kubernetes Event, and what dry-run and replay
print. How the steps that give them fit together: [policies.md](policies.md).
"""


def render() -> str:
    """docs/reasons.md: one row per code, in the enum's order."""
    rows = ["| code | meaning |", "|---|---|"]
    for code in ReasonCode:
        meaning = " ".join(code.description.split()).replace("|", "\\|")
        rows.append(f"| `{code}` | {meaning} |")
    return _HEADER + "\n" + "\n".join(rows) + "\n"


def main() -> None:
    print(render(), end="")


if __name__ == "__main__":
    main()
