"""Running the dq-pipeline command in-process (the model loads once per test session)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from dq_pipeline.cli import cli
from dq_pipeline.results import OUTPUTS


def run(*args: str, expect: int = 0) -> str:
    """Standard output of one command; its exit code must be `expect`."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == expect, f"exit {result.exit_code}, output:\n{result.output}"
    return result.stdout


def run_json(*args: str, expect: int = 0) -> dict:
    """The command's JSON output, checked against its contract (dq_pipeline/results.py): every
    `--json` output the suite produces is also a test of the committed schema's model."""
    payload = json.loads(run(*args, "--json", expect=expect))
    command = " ".join(args[:2]) if args[:1] == ("model",) else args[0]
    if command in OUTPUTS:
        OUTPUTS[command].model_validate(payload)
    return payload
