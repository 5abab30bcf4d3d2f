"""docs/ci.md's commands are ones profila accepts, so the CI example does not rot."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from profila.cli import _parser

CI_DOC = Path(__file__).resolve().parents[2] / "docs" / "ci.md"


def profila_commands() -> list[list[str]]:
    text = CI_DOC.read_text().replace("\\\n", " ")
    commands = []
    for match in re.finditer(r"python -m profila ([^\n#>]+)", text):
        commands.append(shlex.split(match.group(1).replace("$", "")))
    return commands


def test_the_ci_page_has_the_whole_workflow() -> None:
    commands = profila_commands()
    kinds = {c[0] for c in commands}
    assert {"annotate", "diff", "show"} <= kinds
    assert any("--fail-above" in c for c in commands)


@pytest.mark.parametrize("argv", profila_commands(), ids=lambda c: " ".join(c)[:60])
def test_each_documented_command_parses(argv: list[str]) -> None:
    before = argv[: argv.index("--")] if "--" in argv else argv
    _parser().parse_args(before)


def test_the_workflow_is_valid_yaml_with_a_failing_step() -> None:
    yaml = pytest.importorskip("yaml")
    [block] = re.findall(r"```yaml\n(.*?)```", CI_DOC.read_text(), re.S)
    workflow = yaml.safe_load(block)
    steps = workflow["jobs"]["profile"]["steps"]
    runs = " ".join(step.get("run", "") for step in steps)
    assert "annotate" in runs and "--fail-above" in runs
