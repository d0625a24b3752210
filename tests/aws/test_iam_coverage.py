"""Every AWS call each principal of the stack makes is allowed by its policies in template.yaml.

moto enforces no IAM, so this is checked here, offline, against the template's own statements
(resolved for an example stack): action, resource and the condition keys the request carries.

- CALLS: the calls of the Lambda functions (their boto3 and awswrangler calls), of the Spark jobs
  (S3 through EMRFS) and of the crawlers, each citing the page that says what it needs. The
  functions' entries are also checked for completeness: the handlers run under moto with every
  API call recorded, and each recorded call must be covered by an entry (and by the policy).
- TASK_CALLS: for each kind of Task of the workflow, what Step Functions needs to run it (the
  .sync integrations included), derived from each Task state of the definition.

Only a deploy proves the policies are sufficient end to end (README, "What only a deploy
proves"): service-side calls that no documentation lists would not show here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import unquote

import boto3
import pytest
from moto import mock_aws

from carrental import lake
from carrental.aws.ledger import Arrival, Ledger
from carrental.contracts import DATASETS
from carrental.inputs import InputFile
from carrental.lake import TABLES
from carrental.publishing import PUBLISHED_RUNS_TABLE, view_sql
from carrental.report import REPORTS, load_sql
from tests.aws.asl import render
from tests.aws.conftest import use_environment
from tests.aws.daily import Clock, create_daily_stack, table_properties
from tests.aws.job_outputs import put_run_inputs
from tests.aws.lambda_runtime import LambdaContext
from tests.aws.report_data import queue_athena_results, report_results
from tests.aws.sync_stand_in import athena_applies_the_workgroup_output_location
from tests.aws.template import (
    ACCOUNT,
    REGION,
    REPO_ROOT,
    definition_substitutions,
    example_names,
    function_environment,
    iter_states,
    load_template,
    render_definition,
    resolve,
    role_statements,
)

TEMPLATE = load_template()
NAMES = example_names(TEMPLATE)
LAKE, ARTIFACTS = NAMES["DataLakeBucket"], NAMES["ArtifactsBucket"]
LAKE_ARN, ARTIFACTS_ARN = NAMES["DataLakeBucket.Arn"], NAMES["ArtifactsBucket.Arn"]
KEY = NAMES["PipelineKey.Arn"]
CATALOG = f"arn:aws:glue:{REGION}:{ACCOUNT}"
DATABASE = NAMES["GlueDatabase"]
WORKGROUP_ARN = f"arn:aws:athena:{REGION}:{ACCOUNT}:workgroup/{NAMES['AthenaWorkGroup']}"
S3_API = "https://docs.aws.amazon.com/AmazonS3/latest/API/API_{}.html"
LAMBDA_ROLE = "https://docs.aws.amazon.com/lambda/latest/dg/lambda-intro-execution-role.html"
LAMBDA_XRAY = "https://docs.aws.amazon.com/lambda/latest/dg/services-xray.html"
ATHENA_S3 = "https://docs.aws.amazon.com/athena/latest/ug/managed-policies.html"
ATHENA_GLUE = (
    "https://docs.aws.amazon.com/athena/latest/ug/fine-grained-access-to-glue-resources.html"
)
ATHENA_WORKGROUP = "https://docs.aws.amazon.com/athena/latest/ug/workgroups-iam-policy.html"
SNS_KMS = "https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html"
GLUE_CRAWLER = (
    "https://docs.aws.amazon.com/glue/latest/dg/define-crawler-configure-security-settings.html"
)
EMR_RUNTIME_ROLE = (
    "https://docs.aws.amazon.com/emr/latest/EMR-Serverless-UserGuide/security-iam-runtime-role.html"
)
EMR_LOGGING = "https://docs.aws.amazon.com/emr/latest/EMR-Serverless-UserGuide/logging.html"
DYNAMODB = "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/api-permissions-reference.html"
SQS_KMS = "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-key-management.html"
SQS_SEND = (
    "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html"
)
LAMBDA_SQS = "https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html"
LAMBDA_DLQ = "https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html"
SFN_API = "https://docs.aws.amazon.com/step-functions/latest/apireference/API_{}.html"
SNS_PUBLISH = "https://docs.aws.amazon.com/sns/latest/api/API_Publish.html"
MULTIPART = (
    "https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html#mpuAndPermissions"
)
RUN = "20261201T080000Z"
EXECUTION = f"{NAMES['CarRentalPipeline'].replace(':stateMachine:', ':execution:')}:{RUN}"


CRAWLER_CATALOG_ACTIONS = (
    "GetDatabase",
    "GetTable",
    "CreateTable",
    "UpdateTable",
    "BatchCreatePartition",
    "BatchGetPartition",
    "GetPartitions",
    "BatchUpdatePartition",
    # DeleteBehavior DELETE_FROM_DATABASE: the partitions of removed runs
    "BatchDeletePartition",
    "DeletePartition",
)
LOG_DELIVERY_ACTIONS = (
    "CreateLogDelivery",
    "GetLogDelivery",
    "UpdateLogDelivery",
    "DeleteLogDelivery",
    "ListLogDeliveries",
    "PutResourcePolicy",
    "DescribeResourcePolicies",
    "DescribeLogGroups",
)


@dataclass(frozen=True)
class Call:
    principal: str  # the role (logical id) whose policies must allow it
    action: str
    resource: str
    doc: str  # the page that says this call needs this action on this resource
    context: dict[str, str] = field(default_factory=dict)  # condition keys the request carries


def _athena_caller(principal: str) -> list[Call]:
    """Athena runs a query with its caller's permissions: the workgroup, the Glue catalog, the
    data in S3 and the results location."""
    tables = [f"{CATALOG}:table/{DATABASE}/{lake.RUNS_TABLE_PREFIX}{table}" for table in TABLES]
    tables += [f"{CATALOG}:table/{DATABASE}/{PUBLISHED_RUNS_TABLE}"]
    return [
        *[
            Call(principal, f"athena:{a}", WORKGROUP_ARN, ATHENA_WORKGROUP)
            for a in ("StartQueryExecution", "GetQueryExecution", "StopQueryExecution")
        ],
        Call(
            principal,
            "athena:GetDataCatalog",
            f"arn:aws:athena:{REGION}:{ACCOUNT}:datacatalog/AwsDataCatalog",
            ATHENA_GLUE,
        ),
        *[
            Call(principal, f"glue:{a}", r, ATHENA_GLUE)
            for a in ("GetDatabase", "GetTable", "GetPartitions", "BatchGetPartition")
            for r in (f"{CATALOG}:catalog", f"{CATALOG}:database/{DATABASE}", *tables)
        ],
        Call(
            principal,
            "s3:GetObject",
            f"{LAKE_ARN}/processed/user_metrics/run_id=r/p.parquet",
            ATHENA_S3,
        ),
        Call(
            principal,
            "s3:ListBucket",
            LAKE_ARN,
            ATHENA_S3,
            {"s3:prefix": "processed/user_metrics/"},
        ),
        *[
            Call(principal, f"s3:{a}", f"{ARTIFACTS_ARN}/athena-results/q-1.csv", ATHENA_S3)
            for a in ("PutObject", "GetObject", "AbortMultipartUpload", "ListMultipartUploadParts")
        ],
        *[
            Call(principal, f"s3:{a}", ARTIFACTS_ARN, ATHENA_S3)
            for a in ("GetBucketLocation", "ListBucketMultipartUploads")
        ],
        Call(
            principal, "s3:ListBucket", ARTIFACTS_ARN, ATHENA_S3, {"s3:prefix": "athena-results/"}
        ),
    ]


def _lambda_basics(principal: str, log_group: str) -> list[Call]:
    logs = NAMES[f"{log_group}.Arn"]
    return [
        Call(principal, "logs:CreateLogStream", logs, LAMBDA_ROLE),
        Call(principal, "logs:PutLogEvents", logs, LAMBDA_ROLE),
        Call(principal, "xray:PutTraceSegments", "*", LAMBDA_XRAY),
        Call(principal, "xray:PutTelemetryRecords", "*", LAMBDA_XRAY),
    ]


def _spark_jobs() -> list[Call]:
    """What a job run reads and writes with the job role (EMRFS, S3 and CloudWatch logging)."""
    role = "SparkJobRole"
    calls = [
        *[
            Call(role, "s3:GetObject", f"{ARTIFACTS_ARN}/jobs/{f}", EMR_RUNTIME_ROLE)
            for f in ("vehicle_location_performance.py", "carrental.zip")
        ],
        Call(
            role,
            "s3:PutObject",
            f"{ARTIFACTS_ARN}/emr-logs/applications/x/driver/stdout.gz",
            EMR_LOGGING,
        ),
        *[
            Call(role, f"logs:{a}", NAMES["EmrLogGroup.Arn"], EMR_LOGGING)
            for a in ("CreateLogStream", "PutLogEvents", "DescribeLogStreams")
        ],
        Call(
            role,
            "logs:DescribeLogGroups",
            f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:*",
            EMR_LOGGING,
        ),
        # HEAD of a path that does not exist yet: 404 needs s3:ListBucket, and carries no prefix
        Call(role, "s3:ListBucket", LAKE_ARN, S3_API.format("HeadObject")),
        Call(role, "s3:GetBucketLocation", LAKE_ARN, EMR_RUNTIME_ROLE),
    ]
    # the run's manifest and the staged files it lists, never the raw uploads
    for key in [lake.manifest_key(RUN), *(lake.staged_key(d, "0" * 64) for d in DATASETS)]:
        calls.append(Call(role, "s3:GetObject", f"{LAKE_ARN}/{key}", EMR_RUNTIME_ROLE))
        calls.append(Call(role, "s3:ListBucket", LAKE_ARN, EMR_RUNTIME_ROLE, {"s3:prefix": key}))
    for table in TABLES:
        part = f"{LAKE_ARN}/processed/{table}/run_id=r/part-0.parquet"
        calls += [
            Call(role, f"s3:{a}", part, EMR_RUNTIME_ROLE)
            for a in ("PutObject", "GetObject", "DeleteObject", "AbortMultipartUpload")
        ]
        calls.append(
            Call(
                role,
                "s3:ListBucket",
                LAKE_ARN,
                EMR_RUNTIME_ROLE,
                {"s3:prefix": f"processed/{table}/"},
            )
        )
    return calls


def _crawlers() -> list[Call]:
    role = "CrawlerRole"
    calls = [
        Call(role, "glue:GetSecurityConfiguration", "*", GLUE_CRAWLER),
        Call(role, "s3:GetBucketLocation", LAKE_ARN, GLUE_CRAWLER),
        *[
            Call(
                role,
                f"logs:{a}",
                f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws-glue/crawlers-role/x-crawlers:*",
                "https://docs.aws.amazon.com/glue/latest/dg/encryption-security-configuration.html",
            )
            for a in ("CreateLogGroup", "CreateLogStream", "PutLogEvents", "AssociateKmsKey")
        ],
        *[
            Call(
                role,
                f"kms:{a}",
                KEY,
                "https://docs.aws.amazon.com/glue/latest/dg/encryption-security-configuration.html",
            )
            for a in ("Encrypt", "Decrypt", "GenerateDataKey", "DescribeKey")
        ],
    ]
    for crawler in ("VehicleLocationPerformanceCrawler", "UserTransactionAnalysisCrawler"):
        for target in resolve(TEMPLATE["Resources"][crawler]["Properties"]["Targets"], NAMES)[
            "S3Targets"
        ]:
            prefix = target["Path"].removeprefix(f"s3://{LAKE}/")
            table = lake.RUNS_TABLE_PREFIX + prefix.strip("/").rsplit("/", 1)[-1]
            calls += [
                Call(
                    role,
                    "s3:GetObject",
                    f"{LAKE_ARN}/{prefix}run_id=r/part-0.parquet",
                    GLUE_CRAWLER,
                ),
                Call(role, "s3:ListBucket", LAKE_ARN, GLUE_CRAWLER, {"s3:prefix": prefix}),
                *[
                    Call(role, f"glue:{a}", r, GLUE_CRAWLER)
                    for a in CRAWLER_CATALOG_ACTIONS
                    for r in (
                        f"{CATALOG}:catalog",
                        f"{CATALOG}:database/{DATABASE}",
                        f"{CATALOG}:table/{DATABASE}/{table}",
                    )
                ],
            ]
    return calls


def _kms(role: str, doc: str) -> list[Call]:
    return [Call(role, f"kms:{a}", KEY, doc) for a in ("GenerateDataKey", "Decrypt")]


def _ledger(role: str, *actions: str) -> list[Call]:
    return [Call(role, f"dynamodb:{a}", NAMES["LedgerTable.Arn"], DYNAMODB) for a in actions]


def _validate_upload() -> list[Call]:
    role = "ValidateUploadRole"
    upload = f"{LAKE_ARN}/raw/users/users.csv"
    staged = f"{LAKE_ARN}/{lake.staged_key('users', '0' * 64)}"
    quarantined = f"{LAKE_ARN}/quarantine/users/20261201T080000Z-v1-users.csv"
    return [
        # the event's version (GetObject with VersionId), or the object when it has none
        Call(role, "s3:GetObjectVersion", upload, S3_API.format("GetObject")),
        Call(role, "s3:GetObject", upload, S3_API.format("GetObject")),
        Call(role, "s3:ListBucket", LAKE_ARN, S3_API.format("GetObject")),  # 404, not 403
        # is this content staged, is this rejection quarantined (HeadObject)
        Call(role, "s3:GetObject", staged, S3_API.format("HeadObject")),
        Call(role, "s3:GetObject", f"{quarantined}.errors.json", S3_API.format("HeadObject")),
        # upload_file: PutObject, or a multipart upload for a large file
        Call(role, "s3:PutObject", staged, S3_API.format("PutObject")),
        Call(role, "s3:AbortMultipartUpload", staged, MULTIPART),
        # s3.copy of a version: CopyObject (source GetObjectVersion, target PutObject), or multipart
        Call(role, "s3:GetObjectVersion", upload, S3_API.format("CopyObject")),
        Call(role, "s3:PutObject", quarantined, S3_API.format("CopyObject")),
        Call(role, "s3:AbortMultipartUpload", quarantined, MULTIPART),
        Call(role, "s3:PutObject", f"{quarantined}.errors.json", S3_API.format("PutObject")),
        *_ledger(role, "GetItem", "PutItem", "DeleteItem", "UpdateItem", "Query"),
        Call(role, "sqs:SendMessage", NAMES["RunRequestQueue.Arn"], SQS_SEND),
        *_kms(role, SQS_KMS),
        Call(role, "sns:Publish", NAMES["AlertTopic"], SNS_PUBLISH),
        *_kms(role, SNS_KMS),
        Call(role, "sqs:SendMessage", NAMES["UploadEventsDeadLetterQueue.Arn"], LAMBDA_DLQ),
        *_lambda_basics(role, "ValidateUploadLogGroup"),
    ]


def _run_scheduler_start() -> list[Call]:
    role = "RunSchedulerStartRole"
    queue = NAMES["RunRequestQueue.Arn"]
    return [
        # what Lambda's poller does with the function's role
        *[
            Call(role, f"sqs:{a}", queue, LAMBDA_SQS)
            for a in ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes")
        ],
        Call(role, "sqs:SendMessage", queue, SQS_SEND),
        *_kms(role, SQS_KMS),
        *_ledger(role, "GetItem", "Query", "UpdateItem"),
        Call(
            role, "s3:PutObject", f"{LAKE_ARN}/{lake.manifest_key(RUN)}", S3_API.format("PutObject")
        ),
        Call(
            role,
            "states:StartExecution",
            NAMES["CarRentalPipeline"],
            SFN_API.format("StartExecution"),
        ),
        Call(role, "states:DescribeExecution", EXECUTION, SFN_API.format("DescribeExecution")),
        *_lambda_basics(role, "RunSchedulerLogGroup"),
    ]


def _run_scheduler_finish() -> list[Call]:
    role = "RunSchedulerFinishRole"
    return [
        *_ledger(role, "GetItem", "UpdateItem"),
        Call(role, "states:DescribeExecution", EXECUTION, SFN_API.format("DescribeExecution")),
        Call(
            role, "s3:GetObject", f"{LAKE_ARN}/{lake.PUBLISHED_RECORD}", S3_API.format("GetObject")
        ),
        Call(role, "s3:ListBucket", LAKE_ARN, S3_API.format("GetObject")),  # 404, not 403
        *[
            Call(role, "s3:ListBucket", LAKE_ARN, S3_API.format("ListObjectsV2"), {"s3:prefix": p})
            for p in (f"processed/run_inputs/run_id={RUN}/", f"reports/{RUN}/")
        ],
        *[
            Call(role, "s3:DeleteObject", f"{LAKE_ARN}/{key}", S3_API.format("DeleteObjects"))
            for key in (
                f"processed/run_inputs/run_id={RUN}/part-0.parquet",
                f"reports/{RUN}/summary.csv",
            )
        ],
        Call(role, "sqs:SendMessage", NAMES["RunRequestQueue.Arn"], SQS_SEND),
        *_kms(role, SQS_KMS),
        Call(role, "sqs:SendMessage", NAMES["RunEndEventsDeadLetterQueue.Arn"], LAMBDA_DLQ),
        *_lambda_basics(role, "RunSchedulerLogGroup"),
    ]


def _publish_run() -> list[Call]:
    role = "PublishRunRole"
    held_back = f"{LAKE_ARN}/raw/rental_transactions/day-2.csv"
    quarantined = f"{LAKE_ARN}/quarantine/rental_transactions/{RUN}-day-2.csv"
    return [
        Call(
            role, "s3:GetObject", f"{LAKE_ARN}/{lake.manifest_key(RUN)}", S3_API.format("GetObject")
        ),
        # awswrangler lists the run_inputs folder and reads its Parquet files
        Call(
            role,
            "s3:ListBucket",
            LAKE_ARN,
            S3_API.format("ListObjectsV2"),
            {"s3:prefix": f"processed/run_inputs/run_id={RUN}/"},
        ),
        Call(
            role,
            "s3:GetObject",
            f"{LAKE_ARN}/processed/run_inputs/run_id={RUN}/part-0.parquet",
            S3_API.format("GetObject"),
        ),
        Call(role, "s3:GetObject", f"{quarantined}.errors.json", S3_API.format("HeadObject")),
        Call(role, "s3:ListBucket", LAKE_ARN, S3_API.format("HeadObject")),  # 404, not 403
        Call(role, "s3:GetObjectVersion", held_back, S3_API.format("CopyObject")),
        Call(role, "s3:PutObject", quarantined, S3_API.format("CopyObject")),
        Call(role, "s3:AbortMultipartUpload", quarantined, MULTIPART),
        Call(role, "s3:PutObject", f"{quarantined}.errors.json", S3_API.format("PutObject")),
        Call(
            role, "s3:GetObject", f"{LAKE_ARN}/{lake.PUBLISHED_RECORD}", S3_API.format("GetObject")
        ),
        Call(
            role, "s3:PutObject", f"{LAKE_ARN}/{lake.PUBLISHED_RECORD}", S3_API.format("PutObject")
        ),
        *[
            Call(role, "s3:ListBucket", LAKE_ARN, S3_API.format("ListObjectsV2"), {"s3:prefix": p})
            for p in ("processed/business_summary/", "reports/")
        ],
        *[
            Call(role, "s3:DeleteObject", f"{LAKE_ARN}/{key}", S3_API.format("DeleteObjects"))
            for key in (
                f"processed/business_summary/run_id={RUN}/part-0.parquet",
                f"reports/{RUN}/summary.csv",
            )
        ],
        *_ledger(role, "DeleteItem", "UpdateItem"),
        Call(role, "sns:Publish", NAMES["AlertTopic"], SNS_PUBLISH),
        *_kms(role, SNS_KMS),
        *_lambda_basics(role, "PublishRunLogGroup"),
    ]


def _report() -> list[Call]:
    role = "ReportRole"
    report = f"{LAKE_ARN}/reports/{RUN}/summary.csv"
    return [
        *_athena_caller(role),
        # awswrangler reads the workgroup's settings before it starts a query, and each
        # query's CSV result from the results location
        Call(role, "athena:GetWorkGroup", WORKGROUP_ARN, ATHENA_WORKGROUP),
        Call(role, "athena:GetQueryResults", WORKGROUP_ARN, ATHENA_WORKGROUP),
        Call(role, "s3:PutObject", report, S3_API.format("PutObject")),
        Call(role, "s3:DeleteObject", report, S3_API.format("DeleteObjects")),
        *_lambda_basics(role, "ReportLogGroup"),
    ]


CALLS = [
    *_validate_upload(),
    *_run_scheduler_start(),
    *_run_scheduler_finish(),
    *_publish_run(),
    *_report(),
    *_spark_jobs(),
    *_crawlers(),
]

SFN_IAM = "https://docs.aws.amazon.com/step-functions/latest/dg/{}-iam.html"


def _emr_task(params: dict) -> list[tuple[str, str, dict]]:
    application = NAMES["SparkApplication.Arn"]
    return [
        ("emr-serverless:StartJobRun", application, {}),
        ("emr-serverless:GetJobRun", f"{application}/jobruns/job-1", {}),
        ("emr-serverless:CancelJobRun", f"{application}/jobruns/job-1", {}),
        (
            "iam:PassRole",
            params["ExecutionRoleArn"],
            {"iam:PassedToService": "emr-serverless.amazonaws.com"},
        ),
        *[
            (
                f"events:{a}",
                f"arn:aws:events:{REGION}:{ACCOUNT}:rule/StepFunctionsGetEventsForEMRServerlessJobRule",
                {},
            )
            for a in ("PutTargets", "PutRule", "DescribeRule")
        ],
    ]


def _athena_task(params: dict) -> list[tuple[str, str, dict]]:
    """A query's needs; a CREATE OR REPLACE VIEW also creates or updates the view's table."""
    assert params["WorkGroup"] == NAMES["AthenaWorkGroup"]
    needs = [(c.action, c.resource, c.context) for c in _athena_caller("StateMachineRole")]
    view = re.match(r"CREATE OR REPLACE VIEW (\w+) ", params["QueryString"])
    if view:
        table = f"{CATALOG}:table/{DATABASE}/{view[1]}"
        needs += [(f"glue:{a}", table, {}) for a in ("CreateTable", "UpdateTable")]
    return needs


def _glue_task(action: str) -> Callable[[dict], list[tuple[str, str, dict]]]:
    return lambda params: [(action, f"{CATALOG}:crawler/{params['Name']}", {})]


# Task Resource -> (what Step Functions needs for that Task, the page that says so)
TASK_CALLS: dict[str, tuple[Callable[[dict], list[tuple[str, str, dict]]], str]] = {
    "arn:aws:states:::emr-serverless:startJobRun.sync": (
        _emr_task,
        SFN_IAM.format("emr-serverless"),
    ),
    "arn:aws:states:::athena:startQueryExecution.sync": (_athena_task, SFN_IAM.format("athena")),
    "arn:aws:states:::lambda:invoke": (
        lambda p: [
            ("lambda:InvokeFunction", p["FunctionName"], {}),
            ("lambda:InvokeFunction", f"{p['FunctionName']}:live", {}),
        ],
        SFN_IAM.format("lambda"),
    ),
    "arn:aws:states:::sns:publish": (
        lambda p: [
            ("sns:Publish", p["TopicArn"], {}),
            ("kms:GenerateDataKey", KEY, {}),
            ("kms:Decrypt", KEY, {}),
        ],
        SFN_IAM.format("sns"),
    ),
    # AWS SDK integrations need the API's own action on its resource
    "arn:aws:states:::aws-sdk:glue:startCrawler": (
        _glue_task("glue:StartCrawler"),
        "https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html",
    ),
    "arn:aws:states:::aws-sdk:glue:getCrawler": (
        _glue_task("glue:GetCrawler"),
        "https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html",
    ),
}
# What every execution needs: logging to CloudWatch Logs and tracing with X-Ray.
MACHINE_CALLS = [
    *[
        (f"logs:{a}", "*", "https://docs.aws.amazon.com/step-functions/latest/dg/cw-logs.html")
        for a in LOG_DELIVERY_ACTIONS
    ],
    *[
        (f"xray:{a}", "*", "https://docs.aws.amazon.com/step-functions/latest/dg/xray-iam.html")
        for a in (
            "PutTraceSegments",
            "PutTelemetryRecords",
            "GetSamplingRules",
            "GetSamplingTargets",
        )
    ],
]


def _listed(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _condition_holds(condition: dict, context: dict[str, str]) -> bool:
    for operator, tests in condition.items():
        for key, allowed in tests.items():
            if key not in context:
                return False
            patterns = _listed(allowed)
            if operator in ("StringLike", "ArnLike"):
                if not any(fnmatchcase(context[key], p) for p in patterns):
                    return False
            elif operator in ("StringEquals", "ArnEquals"):
                if context[key] not in patterns:
                    return False
            else:
                raise NotImplementedError(f"condition operator {operator}")
    return True


def allowed(principal: str, action: str, resource: str, context: dict[str, str]) -> bool:
    """Whether an Allow statement of the role's policies grants the request (no Deny in them)."""
    for statement in role_statements(TEMPLATE, principal, NAMES):
        if not any(fnmatchcase(action.lower(), a.lower()) for a in _listed(statement["Action"])):
            continue
        if not any(fnmatchcase(resource, r) for r in _listed(statement["Resource"])):
            continue
        if _condition_holds(statement.get("Condition", {}), context):
            return True
    return False


@pytest.mark.parametrize(
    "call", CALLS, ids=lambda c: f"{c.principal}:{c.action}:{c.resource[-40:]}"
)
def test_each_documented_call_is_allowed(call: Call) -> None:
    assert call.doc.startswith("https://docs.aws.amazon.com/")
    assert allowed(call.principal, call.action, call.resource, call.context), call


def test_each_task_of_the_workflow_has_what_step_functions_needs() -> None:
    definition = render_definition(resolve(definition_substitutions(TEMPLATE), NAMES))
    document = {
        "run_id": RUN,
        "bucket": LAKE,
        "manifest_key": lake.manifest_key(RUN),
        "settings": {"crawler_poll_seconds": 30, "sql_quote": "'"},
        "summary_query": {"run_id_literal": f"'{RUN}'"},
        "summary": {"query_execution_id": "q"},
        "failure": {"Error": "E", "Cause": "C"},
        "failed_state": "RunSparkJobs",
    }
    context = {"Execution": {"Id": "x"}, "Task": {"Token": "t"}}
    tasks = [state for _, _, state in iter_states(definition) if state["Type"] == "Task"]
    assert {state["Resource"] for state in tasks} <= set(TASK_CALLS)
    for state in tasks:
        needs, doc = TASK_CALLS[state["Resource"]]
        # the view task runs once per view (its Map's items)
        items = [{"query": view_sql(t)} for t in TABLES] if "$.query" in str(state) else [{}]
        for item in items:
            params = render(state["Parameters"], {**document, **item}, context)
            for action, resource, condition in needs(params):
                assert allowed("StateMachineRole", action, resource, condition), (
                    action,
                    resource,
                    doc,
                )
    for action, resource, doc in MACHINE_CALLS:
        assert allowed("StateMachineRole", action, resource, {}), (action, doc)


def test_the_checks_can_refuse() -> None:
    """The evaluator is not a yes-machine: calls outside a grant are refused."""
    assert not allowed("ValidateUploadRole", "s3:GetObject", f"{LAKE_ARN}/processed/x", {})
    assert not allowed("ReportRole", "s3:ListBucket", LAKE_ARN, {"s3:prefix": "raw/"})
    assert not allowed("ReportRole", "s3:ListBucket", LAKE_ARN, {})  # no prefix, no grant
    assert not allowed("StateMachineRole", "iam:PassRole", NAMES["SparkJobRole.Arn"], {})
    # the workflow replaces the views, never the tables the crawlers keep
    runs_table = f"{CATALOG}:table/{DATABASE}/{lake.RUNS_TABLE_PREFIX}location_performance"
    assert not allowed("StateMachineRole", "glue:UpdateTable", runs_table, {})
    assert not allowed("SparkJobRole", "s3:GetObject", f"{LAKE_ARN}/raw/users/users.csv", {})


# ---------------------------------------------------------------------------- recorded calls

# The IAM action an API operation is authorised by, where it is not "<prefix>:<Operation>":
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html
S3_ACTIONS = {
    "HeadObject": "GetObject",
    "ListObjectsV2": "ListBucket",
    "DeleteObjects": "DeleteObject",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "UploadPartCopy": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "CopyObject": "PutObject",
}
PREFIXES = {"stepfunctions": "states"}


def _requests(service: str, operation: str, params: dict) -> Iterator[tuple[str, str, dict]]:
    """(IAM action, resource ARN, condition context) of one recorded API call."""
    prefix = PREFIXES.get(service, service)
    if service == "s3":
        bucket = params.get("Bucket", "")
        if operation in ("ListObjectsV2", "ListObjects"):
            yield "s3:ListBucket", f"arn:aws:s3:::{bucket}", {"s3:prefix": params.get("Prefix", "")}
            return
        keys = [o["Key"] for o in params.get("Delete", {}).get("Objects", [])] or [
            params.get("Key")
        ]
        action = S3_ACTIONS.get(operation, operation)
        if action == "GetObject" and params.get("VersionId"):
            action = "GetObjectVersion"  # API_GetObject.html: a versionId needs it
        for key in keys:
            yield f"s3:{action}", f"arn:aws:s3:::{bucket}/{key}", {}
        if operation in ("CopyObject", "UploadPartCopy"):
            source = params["CopySource"]  # {"Bucket", "Key"[, "VersionId"]} or "bucket/key"
            if isinstance(source, str):
                path, _, version = unquote(source).partition("?versionId=")
                source = dict(zip(("Bucket", "Key"), path.split("/", 1), strict=True))
                source["VersionId"] = version or None
            read = "GetObjectVersion" if source.get("VersionId") else "GetObject"
            yield f"s3:{read}", f"arn:aws:s3:::{source['Bucket']}/{source['Key']}", {}
    elif service == "dynamodb":
        if operation == "TransactWriteItems":  # needs the action of each item it writes
            for item in params["TransactItems"]:
                ((kind, body),) = item.items()
                action = {"Update": "UpdateItem", "Put": "PutItem", "Delete": "DeleteItem"}.get(
                    kind, "ConditionCheckItem"
                )
                yield (
                    f"dynamodb:{action}",
                    f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{body['TableName']}",
                    {},
                )
        else:
            yield (
                f"dynamodb:{operation}",
                f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{params['TableName']}",
                {},
            )
    elif service == "athena":
        yield f"athena:{operation}", WORKGROUP_ARN, {}  # every query runs in the one workgroup
    elif service == "sns":
        yield "sns:Publish", params["TopicArn"], {}
    elif service == "stepfunctions":
        yield f"states:{operation}", params.get("stateMachineArn") or params["executionArn"], {}
    elif service == "sqs":
        account, name = params["QueueUrl"].rstrip("/").split("/")[-2:]
        yield f"sqs:{operation}", f"arn:aws:sqs:{REGION}:{account}:{name}", {}
    else:
        yield f"{prefix}:{operation}", "*", {}


@dataclass
class Recorder:
    """The API calls made through the default boto3 session (the handlers' clients and
    awswrangler's) inside `with recorder:` blocks: (service, operation, parameters)."""

    calls: list[tuple[str, str, dict]] = field(default_factory=list)
    active: bool = False

    def __call__(self, params, model, **_) -> None:
        if self.active:
            self.calls.append((model.service_model.service_name, model.name, dict(params)))

    def __enter__(self) -> Recorder:
        self.active = True
        return self

    def __exit__(self, *_) -> None:
        self.active = False


@pytest.fixture
def recorder(monkeypatch) -> Iterator[Recorder]:
    athena_applies_the_workgroup_output_location(monkeypatch)
    with mock_aws():
        boto3.setup_default_session(region_name=REGION)
        recording = Recorder()
        boto3.DEFAULT_SESSION.events.register("before-parameter-build", recording)
        try:
            yield recording
        finally:
            boto3.DEFAULT_SESSION = None


def _family(resource: str) -> str:
    """What a CALLS entry stands for: an S3 object ARN stands for its bucket's top folder
    (raw/, quarantine/, reports/, athena-results/...), an execution's ARN for every execution
    of its state machine, anything else for itself."""
    if resource.startswith("arn:aws:s3:::") and "/" in resource:
        bucket, key = resource.removeprefix("arn:aws:s3:::").split("/", 1)
        return f"arn:aws:s3:::{bucket}/{key.split('/', 1)[0]}/"
    if ":execution:" in resource:  # an execution of the state machine, whichever run
        return resource.rsplit(":", 1)[0] + ":*"
    return resource


def _check_recorded(principal: str, recorder: Recorder) -> None:
    listed = {(c.action, _family(c.resource)) for c in CALLS if c.principal == principal}
    checked = 0
    for service, operation, params in recorder.calls:
        for action, resource, context in _requests(service, operation, params):
            assert (action, _family(resource)) in listed, (
                f"{principal} calls {action} on {resource}: add it to CALLS with its doc"
            )
            assert allowed(principal, action, resource, context), (principal, action, resource)
            checked += 1
    assert checked


@pytest.fixture
def daily(recorder, validate_module, scheduler_module, monkeypatch, tmp_path):
    """The daily-operation stack (tests/aws/daily.py): its names are the example stack's."""
    stack = create_daily_stack(
        validate_module, scheduler_module, Clock(), monkeypatch, tmp_path / "staging"
    )
    yield stack
    validate_module.aws_clients.cache_clear()
    scheduler_module.aws_clients.cache_clear()


def test_validate_upload_makes_only_listed_allowed_calls(daily, recorder, monkeypatch) -> None:
    sample = REPO_ROOT / "data" / "sample"
    bad = (sample / "users.csv").read_bytes().replace(b"email", b"mail", 1)
    events = [daily.upload(lake.raw_key("users", "users.csv"), bad)]  # quarantine, report, alert
    events += [daily.upload_file(d, sample / f"{d}.csv") for d in DATASETS]  # staged, recorded
    gone = daily.upload(lake.raw_key("users", "gone.csv"), b"x")  # its version deleted: 404
    daily.s3.delete_object(
        Bucket=LAKE,
        Key=gone["detail"]["object"]["key"],
        VersionId=gone["detail"]["object"]["version-id"],
    )
    outcomes = []
    with recorder:
        for event in [*events, events[1], gone]:  # and a replay
            outcomes.append(daily.validate(event, monkeypatch)["status"])
    assert outcomes == ["rejected", *["accepted"] * 4, "duplicate", "missing"]
    _check_recorded("ValidateUploadRole", recorder)


def test_the_run_scheduler_makes_only_listed_allowed_calls(daily, recorder, monkeypatch) -> None:
    sample = REPO_ROOT / "data" / "sample"
    for dataset in DATASETS:
        daily.upload_and_validate(dataset, sample / f"{dataset}.csv", monkeypatch)
    daily.clock.advance(daily.settle_seconds + 1)
    with recorder:  # a run starts; the other requests find it running
        decisions = daily.pump(monkeypatch)
    assert "started" in [d["status"] for d in decisions]
    _check_recorded("RunSchedulerStartRole", recorder)

    (execution,) = daily.executions()
    run_id = execution["name"]
    for key in (f"processed/run_inputs/run_id={run_id}/part-0.parquet", f"reports/{run_id}/x.csv"):
        daily.s3.put_object(Bucket=LAKE, Key=key, Body=b"half a run")
    daily.sfn.stop_execution(executionArn=execution["executionArn"])
    stopped = daily.sfn.describe_execution(executionArn=execution["executionArn"])
    recorder.calls.clear()
    with recorder:
        ending = daily.deliver_end_event({**stopped, "status": "FAILED"}, monkeypatch)
    assert ending["deleted_objects"] == 2
    _check_recorded("RunSchedulerFinishRole", recorder)


def test_publish_run_makes_only_listed_allowed_calls(recorder, publish_module, monkeypatch) -> None:
    s3, sns, dynamodb = (boto3.client(s) for s in ("s3", "sns", "dynamodb"))
    s3.create_bucket(Bucket=LAKE)
    s3.put_bucket_versioning(Bucket=LAKE, VersioningConfiguration={"Status": "Enabled"})
    topic = sns.create_topic(Name=NAMES["AlertTopic"].rsplit(":", 1)[1])["TopicArn"]
    dynamodb.create_table(
        TableName=NAMES["LedgerTable"], **table_properties(TEMPLATE, "LedgerTable")
    )
    ledger = Ledger(dynamodb, NAMES["LedgerTable"])
    at = "2026-12-01T08:00:00+00:00"
    for index, dataset in enumerate(DATASETS):
        key = lake.raw_key(dataset, "day-2.csv")
        version = s3.put_object(Bucket=LAKE, Key=key, Body=b"x")["VersionId"]
        ledger.accept(
            InputFile(dataset, key, f"{index:064x}", 3, at, at, version),
            Arrival(key, version, f"{index:02X}", datetime.fromisoformat(at)),
        )
    manifest = ledger.inputs().manifest(RUN, at, 0.05)
    s3.put_object(Bucket=LAKE, Key=lake.manifest_key(RUN), Body=manifest.to_json().encode())
    held = lake.raw_key("rental_transactions", "day-2.csv")
    put_run_inputs(s3, LAKE, RUN, manifest.inputs, {held: "held back: orphans"})
    for old in ("20261101T080000Z", "20261102T080000Z", "20261103T080000Z"):
        s3.put_object(
            Bucket=LAKE, Key=f"processed/business_summary/run_id={old}/p.parquet", Body=b""
        )
        s3.put_object(Bucket=LAKE, Key=f"reports/{old}/summary.csv", Body=b"")
    names = {**NAMES, "AlertTopic": topic}
    use_environment(monkeypatch, function_environment(TEMPLATE, "PublishRunFunction", names))
    publish_module.aws_clients.cache_clear()

    with recorder:
        published = publish_module.lambda_handler(
            {"run_id": RUN, "bucket": LAKE, "manifest_key": lake.manifest_key(RUN)},
            LambdaContext("publish-run"),
        )

    publish_module.aws_clients.cache_clear()
    assert published["held_back"] == [held] and len(published["pruned_runs"]) == 3
    _check_recorded("PublishRunRole", recorder)


def test_the_report_makes_only_listed_allowed_calls(
    recorder, report_app, report_context, monkeypatch
) -> None:
    s3, athena = boto3.client("s3"), boto3.client("athena")
    for bucket in (LAKE, ARTIFACTS):
        s3.create_bucket(Bucket=bucket)
    workgroup = resolve(TEMPLATE["Resources"]["AthenaWorkGroup"]["Properties"], NAMES)
    athena.create_work_group(
        Name=workgroup["Name"], Configuration=workgroup["WorkGroupConfiguration"]
    )
    queue_athena_results(list(report_results().values()))
    sql = load_sql(REPORTS["summary.csv"])
    summary_id = athena.start_query_execution(
        QueryString=sql, WorkGroup=workgroup["Name"], QueryExecutionContext={"Database": DATABASE}
    )["QueryExecutionId"]
    monkeypatch.setenv("GLUE_DATABASE", DATABASE)
    monkeypatch.setenv("ATHENA_WORKGROUP", workgroup["Name"])

    with recorder:
        report_app.lambda_handler(
            {"run_id": RUN, "bucket": LAKE, "summary_query_execution_id": summary_id},
            report_context,
        )

    _check_recorded("ReportRole", recorder)
