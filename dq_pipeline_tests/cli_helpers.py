"""Running the dq-pipeline command in-process (the model loads once per test session)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from dq_pipeline.cli import cli


def run(*args: str, expect: int = 0) -> str:
    """Standard output of one command; its exit code must be `expect`."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == expect, f"exit {result.exit_code}, output:\n{result.output}"
    return result.stdout


def run_json(*args: str, expect: int = 0) -> dict:
    return json.loads(run(*args, "--json", expect=expect))
