"""template.yaml and samconfig.toml: the promises cfn-lint and checkov cannot check."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from carrental import lake
from carrental.aws.ledger import EXPIRES_AT, MAX_DELAY_SECONDS
from carrental.deploy import sync_template_sql
from carrental.lake import TABLES
from carrental.local.store import KEEP_PUBLISHED_RUNS
from carrental.publishing import PUBLISHED_RUNS_TABLE, RECORD_COLUMNS
from carrental.report import REPORTS, load_sql
from tests.aws.conftest import load_function
from tests.aws.report_data import placeholder_count
from tests.aws.template import (
    REPO_ROOT,
    dashboard_metrics,
    dashboard_widgets,
    definition_substitutions,
    example_names,
    load_template,
    parameter_defaults,
    render_definition,
    resolve,
)

LAKE = "lake-bucket"
NAMES = {"DataLakeBucket": LAKE, "AWS::StackName": "stack"}
# Spark's commit files and EMRFS's folder markers are no data.
SPARK_MARKERS = {"**/_SUCCESS", "**/_temporary/**", "**/*.crc", "**_$folder$"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def _resources(template, resource_type: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


def _sql_text(text: str) -> str:
    """SQL as the template holds it: trailing blanks of lines and of the file dropped."""
    return "\n".join(line.rstrip() for line in text.rstrip().split("\n"))


def test_each_crawler_makes_one_table_per_folder_of_its_job(template) -> None:
    crawlers = {
        "VehicleLocationPerformanceCrawler": "vehicle_location_performance",
        "UserTransactionAnalysisCrawler": "user_transaction_analysis",
    }
    assert set(_resources(template, "AWS::Glue::Crawler")) == set(crawlers)
    for crawler, job in crawlers.items():
        props = template["Resources"][crawler]["Properties"]
        targets = props["Targets"]["S3Targets"]
        expected = [f"s3://{LAKE}/processed/{t}/" for t, writer in TABLES.items() if writer == job]
        assert [resolve(t["Path"], NAMES) for t in targets] == expected
        assert all(set(t["Exclusions"]) == SPARK_MARKERS for t in targets)
        # One data store per table folder makes one table each; a table level would override
        # that, and level 2 counted from the bucket is processed/ itself.
        configuration = json.loads(props["Configuration"])
        assert "Grouping" not in configuration
        # runs_<table>: the name <table> is the current view's
        assert props["TablePrefix"] == lake.RUNS_TABLE_PREFIX
        assert props["SchemaChangePolicy"]["DeleteBehavior"] == "DELETE_FROM_DATABASE"


def test_spark_runs_the_version_the_tests_run(template) -> None:
    app = template["Resources"]["SparkApplication"]["Properties"]
    assert app["ReleaseLabel"] == "emr-spark-8.0.0"  # Spark 4.0.x on EMR Serverless
    assert version("pyspark").startswith("4.0.")
    assert "InitialCapacity" in app  # pre-initialised workers only when the parameter asks
    assert parameter_defaults(template)["EmrPreInitializedExecutors"] == 0


def _policy_statements(template) -> list[tuple[str, dict]]:
    found = []
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        for policy in props.get("Policies", []):
            found += [(logical_id, s) for s in policy["PolicyDocument"]["Statement"]]
        for key in ("PolicyDocument", "KeyPolicy"):
            if key in props:
                found += [(logical_id, s) for s in props[key]["Statement"]]
    return found


def _actions(statement: dict) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else actions


def test_no_allow_statement_grants_a_wildcard_action(template) -> None:
    statements = _policy_statements(template)
    assert len(statements) > 40
    for owner, statement in statements:
        if statement["Effect"] == "Allow":
            for action in _actions(statement):
                assert action != "*" and not action.endswith(":*"), (owner, action)


def test_only_the_workflow_passes_a_role_and_only_the_spark_job_role(template) -> None:
    passing = [(o, s) for o, s in _policy_statements(template) if "iam:PassRole" in _actions(s)]
    assert len(passing) == 1
    owner, statement = passing[0]
    assert owner == "StateMachineRole"
    assert statement["Resource"] == {"Fn::GetAtt": ["SparkJobRole", "Arn"]}
    assert statement["Condition"] == {
        "StringEquals": {"iam:PassedToService": "emr-serverless.amazonaws.com"}
    }


def test_the_workflow_may_manage_the_emr_sync_rule_and_nothing_else(template) -> None:
    events = [
        s
        for o, s in _policy_statements(template)
        if any(a.startswith("events:") for a in _actions(s))
    ]
    assert len(events) == 1
    assert sorted(_actions(events[0])) == [
        "events:DescribeRule",
        "events:PutRule",
        "events:PutTargets",
    ]
    assert events[0]["Resource"]["Fn::Sub"].endswith(
        ":rule/StepFunctionsGetEventsForEMRServerlessJobRule"
    )


def test_every_function_service_and_job_has_its_own_role(template) -> None:
    resources = template["Resources"]
    users = {
        name: resources[name]["Properties"]["Role"]
        for name in [
            *_resources(template, "AWS::Serverless::Function"),
            "CarRentalPipeline",
            "VehicleLocationPerformanceCrawler",
        ]
    }
    roles = [role["Fn::GetAtt"][0] for role in users.values()]
    assert len(set(roles)) == len(roles) == 7, users
    assert (
        resources["UserTransactionAnalysisCrawler"]["Properties"]["Role"]
        == (users["VehicleLocationPerformanceCrawler"])
    )
    assert set(_resources(template, "AWS::IAM::Role")) == {*roles, "SparkJobRole"}


def test_buckets_are_encrypted_private_and_tls_only(template) -> None:
    buckets = _resources(template, "AWS::S3::Bucket")
    policies = {
        p["Properties"]["Bucket"]["Ref"]: p["Properties"]["PolicyDocument"]["Statement"]
        for p in _resources(template, "AWS::S3::BucketPolicy").values()
    }
    for name, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"], name
        assert all(props["PublicAccessBlockConfiguration"].values()), name
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}, name
        deny = [s for s in policies[name] if s["Effect"] == "Deny"]
        assert deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}, name
    lake = buckets["DataLakeBucket"]["Properties"]
    assert lake["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"]
    expiring = {
        rule.get("Prefix")
        for rule in buckets["ArtifactsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
        if "ExpirationInDays" in rule
    }
    assert expiring == {"emr-logs/", "athena-results/"}


def test_uploads_under_raw_reach_validation_with_retries_and_a_dead_letter_queue(template) -> None:
    rule = template["Resources"]["UploadEventsRule"]["Properties"]
    assert rule["EventPattern"]["detail-type"] == ["Object Created"]
    assert rule["EventPattern"]["detail"]["object"] == {"key": [{"prefix": "raw/"}]}
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["ValidateUploadFunction", "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    assert target["DeadLetterConfig"]["Arn"] == {
        "Fn::GetAtt": ["UploadEventsDeadLetterQueue", "Arn"]
    }


# Each function's code folder (the Makefile's build-<function> target copies it).
FUNCTION_FOLDERS = {
    "ValidateUploadFunction": ("validate_upload", "upload"),
    "RunSchedulerStartFunction": ("run_scheduler", "scheduler"),
    "RunSchedulerFinishFunction": ("run_scheduler", "scheduler"),
    "PublishRunFunction": ("publish_run", "publish"),
    "ReportFunction": ("report", None),
}


class ReadsRecorded(dict):
    """An environment that records which variables the code reads."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.read: set[str] = set()

    def __getitem__(self, name):
        self.read.add(name)
        return super().__getitem__(name)

    def get(self, name, default=None):
        self.read.add(name)
        return super().get(name, default)


def _environment(template, function: str) -> dict[str, str]:
    return template["Resources"][function]["Properties"]["Environment"]["Variables"]


@pytest.mark.parametrize("function", [f for f, (_, module) in FUNCTION_FOLDERS.items() if module])
def test_each_function_gets_exactly_the_environment_its_settings_read(template, function) -> None:
    folder, module = FUNCTION_FOLDERS[function]
    load_function(folder, function)  # its modules, as Lambda imports them
    settings = sys.modules[module].Settings
    variables = _environment(template, function)
    environment = ReadsRecorded({name: "1" for name in variables})
    environment.update(
        {n: "0.05" for n in environment if n.endswith("THRESHOLD")}, STAGING_DIR="/tmp/x"
    )
    settings.from_env(environment)
    powertools = {n for n in variables if n.startswith("POWERTOOLS_")}
    assert environment.read | powertools == set(variables), function
    assert {variables["POWERTOOLS_METRICS_NAMESPACE"]} == {"carrental"}


def test_the_ledger_table_and_the_timings_the_functions_rely_on(template) -> None:
    resources = template["Resources"]
    table = resources["LedgerTable"]["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert table["TimeToLiveSpecification"] == {"AttributeName": EXPIRES_AT, "Enabled": True}
    validate = resources["ValidateUploadFunction"]["Properties"]
    start = resources["RunSchedulerStartFunction"]["Properties"]
    for scheduler in ("RunSchedulerStartFunction", "RunSchedulerFinishFunction"):
        variables = _environment(template, scheduler)
        # a validating mark older than the validator's timeout is a crashed validation
        assert int(variables["VALIDATION_TIMEOUT_SECONDS"]) == validate["Timeout"]
        # a lock without an execution this long was left by a starter that timed out
        assert int(variables["START_GRACE_SECONDS"]) > start["Timeout"]
    assert (
        int(_environment(template, "ValidateUploadFunction")["EPHEMERAL_STORAGE_MB"])
        == (validate["EphemeralStorage"]["Size"])
    )
    queue = resources["RunRequestQueue"]["Properties"]
    assert queue["VisibilityTimeout"] >= 6 * start["Timeout"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["RunRequestDeadLetterQueue", "Arn"]
    }
    (source,) = start["Events"].values()
    assert source["Type"] == "SQS"
    assert source["Properties"]["Queue"] == {"Fn::GetAtt": ["RunRequestQueue", "Arn"]}
    settle = template["Parameters"]["SettleSeconds"]
    assert settle["MinValue"] == 0 and settle["MaxValue"] == MAX_DELAY_SECONDS
    assert parameter_defaults(template)["KeptPublishedRuns"] == KEEP_PUBLISHED_RUNS  # as locally
    assert parameter_defaults(template)["RejectThreshold"] == "0.05"


def test_every_end_of_a_run_reaches_the_finish_function(template) -> None:
    rule = template["Resources"]["RunEndsRule"]["Properties"]
    assert rule["EventPattern"] == {
        "source": ["aws.states"],
        "detail-type": ["Step Functions Execution Status Change"],
        "detail": {
            "stateMachineArn": [{"Ref": "CarRentalPipeline"}],
            "status": ["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"],
        },
    }
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["RunSchedulerFinishFunction", "Arn"]}
    assert target["DeadLetterConfig"]["Arn"] == {
        "Fn::GetAtt": ["RunEndEventsDeadLetterQueue", "Arn"]
    }


def test_the_published_runs_table_is_the_publish_record(template) -> None:
    table = template["Resources"]["PublishedRunsTable"]["Properties"]["TableInput"]
    assert table["Name"] == PUBLISHED_RUNS_TABLE
    glue_types = {"VARCHAR": "string", "BOOLEAN": "boolean"}
    storage = table["StorageDescriptor"]
    assert [(c["Name"], c["Type"]) for c in storage["Columns"]] == [
        (name, glue_types[kind]) for name, kind in RECORD_COLUMNS.items()
    ]
    folder = lake.PUBLISHED_RECORD.rsplit("/", 1)[0]
    assert resolve(storage["Location"], NAMES) == f"s3://{LAKE}/{folder}/"
    assert storage["SerdeInfo"]["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"


def test_the_workflow_may_replace_the_current_views_and_no_other_table(template) -> None:
    statements = template["Resources"]["StateMachineRole"]["Properties"]["Policies"][0][
        "PolicyDocument"
    ]["Statement"]
    (views,) = [s for s in statements if s["Sid"] == "ReplaceCurrentViews"]
    names = {
        "AWS::Partition": "aws",
        "AWS::Region": "r",
        "AWS::AccountId": "1",
        "GlueDatabase": "db",
    }
    assert [resolve(r, names) for r in views["Resource"]] == [
        f"arn:aws:glue:r:1:table/db/{table}" for table in TABLES
    ]


def test_athena_workgroup_is_enforced_encrypted_and_capped(template) -> None:
    config = template["Resources"]["AthenaWorkGroup"]["Properties"]["WorkGroupConfiguration"]
    assert config["EnforceWorkGroupConfiguration"] is True
    assert config["BytesScannedCutoffPerQuery"] == {"Ref": "AthenaBytesScannedCutoffPerQuery"}
    assert config["ResultConfiguration"]["EncryptionConfiguration"]["EncryptionOption"]
    assert resolve(config["ResultConfiguration"]["OutputLocation"], {"ArtifactsBucket": "a"}) == (
        "s3://a/athena-results/"
    )


def test_named_queries_hold_the_sql_files(template) -> None:
    named = {
        q["Properties"]["Name"]["Fn::Sub"].split("-", 1)[1]: q["Properties"]["QueryString"]
        for q in _resources(template, "AWS::Athena::NamedQuery").values()
    }
    assert named == {Path(f).stem: _sql_text(load_sql(f)) for f in REPORTS.values()}


def test_the_workflow_runs_the_summary_sql_with_one_parameter_per_placeholder(template) -> None:
    substitutions = definition_substitutions(template)
    plain = {k: v for k, v in substitutions.items() if isinstance(v, str)}
    definition = render_definition({**{k: "x" for k in substitutions}, **plain})
    query = definition["States"]["RunSummaryQuery"]["Parameters"]
    sql = load_sql(REPORTS["summary.csv"])
    assert query["QueryString"] == sql
    arguments = substitutions["SummaryQueryParameters"].split(", ")
    assert arguments == ["$.summary_query.run_id_literal"] * placeholder_count(sql)


def test_generated_sql_blocks_are_up_to_date() -> None:
    assert not sync_template_sql(check=True), "run `make sync-template-sql`"


def test_every_checkov_skip_says_why(template) -> None:
    skips = [
        (name, skip)
        for name, resource in template["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for name, skip in skips:
        assert skip["id"].startswith("CKV_") and len(skip["comment"]) > 30, name


def test_outputs_tell_a_user_where_to_upload_and_look(template) -> None:
    assert {
        "DataLakeBucketName",
        "ArtifactsBucketName",
        "UploadPrefix",
        "ReportsPrefix",
        "StateMachineArn",
        "AthenaWorkGroupName",
        "GlueDatabaseName",
        "ExampleUploadCommand",
        "PublishRecord",
        "RunRequestQueueUrl",
        "OperationsDashboardName",
        "OperationsDashboardUrl",
    } <= set(template["Outputs"])


def test_samconfig_has_dev_and_prod_for_this_template(template) -> None:
    config = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text(encoding="utf-8"))
    for env in ("dev", "prod"):
        deploy = config[env]["deploy"]["parameters"]
        assert deploy["stack_name"] == f"carrental-{env}"
        assert deploy["capabilities"] == "CAPABILITY_IAM"
        assert deploy["resolve_s3"] is True
        for item in deploy["parameter_overrides"]:
            key, value = item.split("=", 1)
            spec = template["Parameters"][key]
            assert " " not in value, f"SAM CLI would cut {item!r} at the space"
            assert re.fullmatch(spec.get("AllowedPattern", ".*"), value), item
            assert value in map(str, spec.get("AllowedValues", [value])), item
        assert config[env]["build"]["parameters"]["build_in_source"] is True


def test_sam_build_targets_package_the_layer_and_every_function(template, tmp_path) -> None:
    assert set(FUNCTION_FOLDERS) == set(_resources(template, "AWS::Serverless::Function"))
    layer_dir = tmp_path / "build-CarrentalLayer"
    subprocess.run(
        ["make", "--silent", "build-CarrentalLayer", f"ARTIFACTS_DIR={layer_dir}"],
        cwd=REPO_ROOT,
        check=True,
    )
    layer = layer_dir / "python" / "carrental"
    assert (layer / "__init__.py").is_file() and (layer / "aws" / "ledger.py").is_file()
    assert not list(layer.rglob("__pycache__"))
    # the Report function reads its SQL from the layer, as package data
    assert sorted(p.name for p in (layer / "sql").iterdir()) == sorted(REPORTS.values())
    for sql_file in REPORTS.values():
        assert (layer / "sql" / sql_file).read_text() == load_sql(sql_file)
    for function, (folder, _) in FUNCTION_FOLDERS.items():
        built = tmp_path / function
        subprocess.run(
            ["make", "--silent", f"build-{function}", f"ARTIFACTS_DIR={built}"],
            cwd=REPO_ROOT,
            check=True,
        )
        sources = sorted(p.name for p in (REPO_ROOT / "lambdas" / folder).glob("*.py"))
        assert sorted(p.name for p in built.iterdir()) == sources, function
        for name in sources:
            assert (built / name).read_bytes() == (
                REPO_ROOT / "lambdas" / folder / name
            ).read_bytes()


# Resource type -> (service, create operation, the request member its Name property becomes).
NAME_APIS = {
    "AWS::EMRServerless::Application": ("emr-serverless", "CreateApplication", "name"),
    "AWS::Serverless::StateMachine": ("stepfunctions", "CreateStateMachine", "name"),
    "AWS::Athena::WorkGroup": ("athena", "CreateWorkGroup", "Name"),
    "AWS::Athena::NamedQuery": ("athena", "CreateNamedQuery", "Name"),
    "AWS::Glue::Crawler": ("glue", "CreateCrawler", "Name"),
    "AWS::Glue::SecurityConfiguration": ("glue", "CreateSecurityConfiguration", "Name"),
    "AWS::KMS::Alias": ("kms", "CreateAlias", "AliasName"),
    "AWS::Logs::LogGroup": ("logs", "CreateLogGroup", "logGroupName"),
    "AWS::CloudWatch::Dashboard": ("cloudwatch", "PutDashboard", "DashboardName"),
}
NAME_PROPERTIES = ("Name", "AliasName", "LogGroupName", "DashboardName")


def _stack_named(template) -> list[tuple[str, str, Any]]:
    found = []
    for logical_id, resource in template["Resources"].items():
        for prop in NAME_PROPERTIES:
            value = resource.get("Properties", {}).get(prop)
            if isinstance(value, dict) and "${AWS::StackName}" in str(value):
                found.append((logical_id, resource["Type"], value))
    return found


def test_every_name_derived_from_the_stack_name_fits_at_the_longest_allowed_stack_name(
    template,
) -> None:
    import botocore.session

    from carrental.deploy import STACK_NAME_MAX, DeployError, check_stack_name

    models = botocore.session.get_session()
    named = _stack_named(template)
    assert {kind for _, kind, _ in named} == set(NAME_APIS), "add the new kind to NAME_APIS"
    slack = {}
    for logical_id, kind, value in named:
        service, operation, member = NAME_APIS[kind]
        shape = models.get_service_model(service).operation_model(operation).input_shape
        # a max length, one in the pattern, or (PutDashboard) one the documentation states
        metadata = shape.members[member].metadata
        documented = re.search(r"maximum length is (\d+)", shape.members[member].documentation)
        limit = (
            metadata.get("max")
            or (int(documented[1]) if documented else None)
            or int(re.search(r",(\d+)\}$", metadata["pattern"])[1])
        )
        names = {**parameter_defaults(template), "AWS::StackName": "s" * STACK_NAME_MAX}
        slack[logical_id] = limit - len(resolve(value, names))
    assert min(slack.values()) == 0, slack  # the limit is the tightest one, not a guess
    assert check_stack_name("s" * STACK_NAME_MAX)
    with pytest.raises(DeployError, match="at most"):
        check_stack_name("s" * (STACK_NAME_MAX + 1))
    for env in ("dev", "prod"):
        config = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text(encoding="utf-8"))
        check_stack_name(config[env]["deploy"]["parameters"]["stack_name"])


def test_the_workflow_polls_crawlers_no_faster_than_every_ten_seconds(template) -> None:
    poll = template["Parameters"]["CrawlerPollSeconds"]
    assert poll["MinValue"] >= 10 and poll["Default"] >= poll["MinValue"]


def test_the_spark_jobs_run_on_a_pinned_python_carrental_supports(template) -> None:
    names = {"ArtifactsBucket": "a"}
    parameters = resolve(definition_substitutions(template)["SparkSubmitParameters"], names)
    pinned = re.findall(r"--conf (spark\.[\w.-]*PYSPARK_\w+)=(\S+)", parameters)
    assert {key for key, _ in pinned} == {
        "spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON",
        "spark.emr-serverless.driverEnv.PYSPARK_PYTHON",
        "spark.executorEnv.PYSPARK_PYTHON",
    }
    (interpreter,) = {path for _, path in pinned}
    version = tuple(
        int(p) for p in re.fullmatch(r"/usr/bin/python(\d+)\.(\d+)", interpreter).groups()
    )
    required = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"][
        "requires-python"
    ]
    assert version >= tuple(int(p) for p in re.search(r">=(\d+)\.(\d+)", required).groups())


def test_the_managed_layers_are_the_versions_the_tests_run(template) -> None:
    from importlib.metadata import version as installed

    defaults = parameter_defaults(template)
    assert defaults["PowertoolsLayerArn"].endswith(f"/{installed('aws-lambda-powertools')}")
    # AWSSDKPandas-Python311:24 in us-east-1 is awswrangler 3.14.0 (aws-sdk-pandas layers.rst)
    assert defaults["AwsSdkPandasLayerArn"].endswith(":layer:AWSSDKPandas-Python311:24")
    assert installed("awswrangler") == "3.14.0" and installed("pyarrow") == "20.0.0"


# AWS's own metrics on the dashboard, with the page that lists each.
AWS_METRICS = {
    # https://docs.aws.amazon.com/step-functions/latest/dg/procedure-cw-metrics.html
    "AWS/States": {
        "ExecutionsStarted",
        "ExecutionsSucceeded",
        "ExecutionsFailed",
        "ExecutionsTimedOut",
        "ExecutionsAborted",
        "ExecutionTime",
    },
    # https://docs.aws.amazon.com/emr/latest/EMR-Serverless-UserGuide/app-job-metrics.html
    "AWS/EMRServerless": {"SuccessJobs", "FailedJobs"},
    # https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html
    "AWS/Lambda": {"Errors"},
    # https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-available-cloudwatch-metrics.html
    "AWS/SQS": {"ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesDelayed"},
}


def emitted_metrics(template) -> set[tuple[str, str, str]]:
    """(namespace, service dimension, metric name) of every metric the functions' code emits,
    namespace and service from each function's environment (Powertools reads them there)."""
    import ast

    emitted = set()
    for function, (folder, _) in FUNCTION_FOLDERS.items():
        environment = _environment(template, function)
        namespace = environment["POWERTOOLS_METRICS_NAMESPACE"]
        service = environment["POWERTOOLS_SERVICE_NAME"]
        for source in (REPO_ROOT / "lambdas" / folder).glob("*.py"):
            for node in ast.walk(ast.parse(source.read_text())):
                if isinstance(node, ast.Call) and ast.unparse(node.func) in (
                    "metrics.add_metric",
                    "single_metric",
                ):
                    name = next(k.value for k in node.keywords if k.arg == "name")
                    # a literal, or a choice between literals
                    emitted |= {
                        (namespace, service, c.value)
                        for c in ast.walk(name)
                        if isinstance(c, ast.Constant) and isinstance(c.value, str)
                    }
    return emitted


def test_the_dashboard_shows_every_metric_the_functions_emit_and_no_other(template) -> None:
    emitted, shown = emitted_metrics(template), dashboard_metrics(template)
    assert len(shown) >= 25
    for namespace, name, service in shown:
        if namespace in AWS_METRICS:
            assert name in AWS_METRICS[namespace], (namespace, name)
        else:  # ours: emitted under this namespace, by this service if the widget names one
            emitters = {s for ns, s, n in emitted if (ns, n) == (namespace, name)}
            assert emitters and (service is None or service in emitters), (namespace, name)
    ours = {(ns, n) for ns, _, n in emitted}
    assert ours <= {(namespace, name) for namespace, name, _ in shown}
    for widget in dashboard_widgets(template, example_names(template)):
        if widget["type"] == "log":
            emr_logs = example_names(template)["EmrLogGroup"]
            assert widget["properties"]["query"].startswith(f"SOURCE '{emr_logs}' |")
