"""The structure of stepfunctions/car_rental_pipeline.asl.json (statelint runs in `make lint`)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from carrental import tables
from tests.aws.template import (
    ASL_PATH,
    definition_substitutions,
    iter_states,
    load_template,
    nested_machines,
)

NEVER_RETRIED = {"States.ALL", "States.TaskFailed", "States.Timeout"}


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    return json.loads(ASL_PATH.read_text(encoding="utf-8"))


def _states_of_type(definition: dict[str, Any], state_type: str) -> list[tuple[str, dict]]:
    return [(name, s) for _, name, s in iter_states(definition) if s["Type"] == state_type]


def test_every_task_catches_every_error(definition) -> None:
    tasks = _states_of_type(definition, "Task")
    assert len(tasks) >= 8
    for name, task in tasks:
        catchers = task.get("Catch", [])
        assert any(c["ErrorEquals"] == ["States.ALL"] for c in catchers), name


def test_every_choice_has_a_default(definition) -> None:
    choices = _states_of_type(definition, "Choice")
    assert len(choices) == 4
    for name, choice in choices:
        assert choice.get("Default"), name


def test_placeholders_and_substitutions_match_exactly() -> None:
    placeholders = set(re.findall(r"\$\{([^}]+)\}", ASL_PATH.read_text(encoding="utf-8")))
    substitutions = set(definition_substitutions(load_template()))
    assert placeholders - substitutions == set(), "placeholders without a substitution"
    assert substitutions - placeholders == set(), "substitutions the definition never uses"


def test_no_arn_or_name_is_written_into_the_definition() -> None:
    text = ASL_PATH.read_text(encoding="utf-8")
    resources = set(re.findall(r'"Resource": "([^"]+)"', text))
    assert all(r.startswith("arn:aws:states:::") for r in resources), resources
    assert not re.search(r"arn:aws:(?!states:::)", text)
    assert not re.search(r"[0-9]{12}", text), "an account id is hard-coded"


def test_failures_outside_branches_are_recorded_alerted_and_failed(definition) -> None:
    states = definition["States"]
    for name, state in states.items():
        for catcher in state.get("Catch", []):
            if name == "NotifyFailure":
                assert catcher["Next"] == "PipelineFailed"
                continue
            record = states[catcher["Next"]]
            assert catcher["ResultPath"] == "$.failure"
            assert record == {
                "Type": "Pass",
                "Result": name,
                "ResultPath": "$.failed_state",
                "Next": "NotifyFailure",
            }, name
    assert states["NotifyFailure"]["Resource"] == "arn:aws:states:::sns:publish"
    assert states["NotifyFailure"]["Next"] == "PipelineFailed"
    assert states["PipelineFailed"]["Type"] == "Fail"


def test_failures_inside_branches_fail_the_branch_naming_the_state(definition) -> None:
    for nesting in ("RunSparkJobs", "CrawlTables", "UpdateCurrentViews"):
        for branch in nested_machines(definition["States"][nesting]):
            branch_states = branch["States"]
            for name, state in branch_states.items():
                for catcher in state.get("Catch", []):
                    failed = branch_states[catcher["Next"]]
                    assert failed["Type"] == "Fail"
                    assert failed["ErrorPath"] == "$.failure.Error"
                    assert name in failed["CausePath"], (name, failed)


def test_retries_are_for_transient_errors_only(definition) -> None:
    retried = 0
    for _, name, state in iter_states(definition):
        for retrier in state.get("Retry", []):
            retried += 1
            assert not NEVER_RETRIED & set(retrier["ErrorEquals"]), name
            assert isinstance(retrier["BackoffRate"], float), name
    assert retried >= 5


def test_every_state_is_reachable(definition) -> None:
    def targets(state: dict[str, Any]) -> set[str]:
        found = {state.get("Next"), state.get("Default")}
        found |= {c["Next"] for c in state.get("Catch", [])}
        found |= {c["Next"] for c in state.get("Choices", [])}
        return found - {None}

    def check(machine: dict[str, Any]) -> None:
        seen, todo = set(), [machine["StartAt"]]
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(targets(machine["States"][name]))
        assert seen == set(machine["States"]), set(machine["States"]) - seen
        for state in machine["States"].values():
            for branch in nested_machines(state):
                check(branch)

    check(definition)


def test_the_workflow_runs_spark_crawls_replaces_the_views_queries_reports_then_publishes(
    definition,
) -> None:
    path, name = [], definition["StartAt"]
    while name:
        path.append(name)
        name = definition["States"][name].get("Next")
    assert path == [
        "PrepareRun",
        "RunSparkJobs",
        "CrawlTables",
        "PrepareCurrentViews",
        "UpdateCurrentViews",
        "PrepareSummaryQuery",
        "RunSummaryQuery",
        "WriteReport",
        "PublishRun",
        "PipelineSucceeded",
    ]
    resources = {n: s.get("Resource") for _, n, s in iter_states(definition)}
    assert resources["RunVehicleLocationPerformanceJob"] == (
        "arn:aws:states:::emr-serverless:startJobRun.sync"
    )
    assert resources["RunSummaryQuery"] == "arn:aws:states:::athena:startQueryExecution.sync"
    assert resources["StartUserTransactionAnalysisCrawler"] == (
        "arn:aws:states:::aws-sdk:glue:startCrawler"
    )
    assert resources["UpdateCurrentView"] == "arn:aws:states:::athena:startQueryExecution.sync"
    assert resources["PublishRun"] == "arn:aws:states:::lambda:invoke"
    # the publish is the last thing a run does: nothing after it can fail the run
    assert definition["States"]["PublishRun"]["Next"] == "PipelineSucceeded"


def test_the_spark_branches_are_the_jobs_in_order(definition) -> None:
    """One branch per job of carrental.tables.JOBS, running that job's entry point."""
    branches = definition["States"]["RunSparkJobs"]["Branches"]
    entry_points = [
        b["States"][b["StartAt"]]["Parameters"]["JobDriver"]["SparkSubmit"]["EntryPoint"]
        for b in branches
    ]
    assert entry_points == [f"s3://${{ArtifactsBucket}}/jobs/{job}.py" for job in tables.JOBS]
