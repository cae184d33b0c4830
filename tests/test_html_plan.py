"""The plan HTML report: each question's page, `kairos plan --html`, and the pages drawn by headless Chromium."""

from __future__ import annotations

import importlib.util
import json

import pytest
from typer.testing import CliRunner

from kairos.cli.main import app

from browser import assert_renders, render
from test_html_report import FIGURES as RUN_FIGURES

pytestmark = pytest.mark.skipif(importlib.util.find_spec("plotly") is None, reason="plotly is not installed")

SMALL = ["--set", "workload.num_requests=120", "--workers", "1"]
QUESTIONS = {
    "search": (["--search", "--trials", "4", "--gpu", "h100,h200", "--tp", "1", "--total-gpus", "2"],
               ["pareto"], ["ranked-table", "launch-table"]),
    "capacity": (["--capacity"], ["probes"], ["probes-table", "launch-table"]),
    "target_rate": (["--target-rate", "30", "--gpu", "h100,h200", "--tp", "1"], ["candidates"],
                    ["candidates-table", "launch-table"]),
}


@pytest.mark.parametrize("question", QUESTIONS)
def test_plan_html_draws_each_question_in_headless_chromium(question, tmp_path):
    args, figures, tables = QUESTIONS[question]
    result = CliRunner().invoke(app, ["plan", *args, *SMALL, "--html", str(tmp_path)])
    assert result.exit_code == 0, result.output
    page = tmp_path / "plan.html"
    text = page.read_text()
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["question"] == question
    # Below the plan, the chosen deployment run at its planned load.
    figures = figures + RUN_FIGURES
    for element in figures + tables + ["replicas-table"]:
        assert f'id="{element}"' in text
    assert "The chosen deployment at its planned load" in text
    if question == "search":
        assert "Pareto front" in text and "chosen" in text
    if question == "capacity":
        assert f"arrivals at {plan['capacity']:g}/s" in text
    assert_renders(render(page, tmp_path), len(figures))
