"""Ship the code around the AWS stack: the Spark job code and the SQL inside template.yaml.

EMR Serverless runs `emr_jobs/<job>.py` with the carrental package as a `--py-files` archive;
both live under `s3://<ArtifactsBucket>/jobs/`, the paths the state machine passes to
`startJobRun` (stepfunctions/car_rental_pipeline.asl.json). `stage_jobs` writes the three files,
`upload_jobs` uploads them; `carrental deploy-jobs` finds the bucket in the stack's outputs, and
`carrental deploy-jobs --out DIR` writes them to DIR/jobs/ without any AWS call (what the EMR
emulation test runs).

CloudFormation cannot read files, so the SQL of carrental/sql/ is copied into template.yaml between
`# BEGIN GENERATED ...` / `# END GENERATED ...` markers: one `AWS::Athena::NamedQuery` per report
query for analysts, the summary query (JSON-escaped, as the state machine's `${SummaryQuery}`
substitution) with one execution parameter per `?`, and the current views
(carrental.publishing.view_sql for every table, as the JSON list the workflow's
`${CurrentViewQueries}` substitution holds). `sync_template_sql` rewrites those blocks; a test
fails when they drift.

template.yaml, samconfig.toml and emr_jobs/ belong to the repository, not to the package: these
commands work in a clone (an installed carrental says so instead of failing on a missing file).

Standard library at module level (boto3 and the report module are imported where used).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carrental.lake import TABLES

PACKAGE_DIR = Path(__file__).resolve().parent
# In a clone the package sits at the repository's root; installed, this is site-packages.
REPO_ROOT = PACKAGE_DIR.parent
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
SAMCONFIG_PATH = REPO_ROOT / "samconfig.toml"
JOB_SCRIPTS_DIR = REPO_ROOT / "emr_jobs"

JOBS_PREFIX = "jobs/"
ARCHIVE_NAME = "carrental.zip"
# A fixed timestamp makes the archive byte-identical for identical sources.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)

NAMED_QUERIES_BLOCK = "NAMED QUERIES"
SUMMARY_QUERY_BLOCK = "SUMMARY QUERY"
CURRENT_VIEWS_BLOCK = "CURRENT VIEW QUERIES"
# The state machine's PrepareSummaryQuery state puts the quoted run id here.
RUN_ID_LITERAL_PATH = "$.summary_query.run_id_literal"


class DeployError(RuntimeError):
    """A deploy step cannot go on; the message says what is missing and how to fix it."""


def repository_file(path: Path) -> Path:
    """`path`, a file of the repository; a DeployError if this carrental is not a clone's."""
    if not path.exists():
        raise DeployError(
            f"{path} not found: deploy-jobs and sync-template-sql work on the stack files of "
            "the carrental repository, in a clone of it (an installed carrental holds no "
            "template.yaml, samconfig.toml or emr_jobs/)"
        )
    return path


# ---------------------------------------------------------------------------- job code


def job_names() -> list[str]:
    """The Spark jobs, one entry point each (emr_jobs/<job>.py), from the lake's table map."""
    return sorted(set(TABLES.values()))


def package_files() -> list[Path]:
    """Every module of the carrental package (no caches, no build leftovers)."""
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


def build_jobs_archive(dest_dir: Path) -> Path:
    """Zip the carrental package for `--py-files`: `carrental/...` at the archive root."""
    archive = dest_dir / ARCHIVE_NAME
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in package_files():
            name = path.relative_to(PACKAGE_DIR.parent).as_posix()
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())
    return archive


def job_script(job: str) -> Path:
    script = repository_file(JOB_SCRIPTS_DIR) / f"{job}.py"
    if not script.is_file():
        raise DeployError(f"job entry point {script} is missing (jobs come from carrental.lake)")
    return script


def stage_jobs(dest_dir: Path) -> list[tuple[Path, str]]:
    """Write what a deploy ships under dest_dir, laid out as in the artifacts bucket
    (dest_dir/jobs/<job>.py, dest_dir/jobs/carrental.zip); returns (file, S3 key) pairs, the
    entry points first."""
    scripts = [job_script(job) for job in job_names()]  # all there, before writing anything
    jobs_dir = dest_dir / JOBS_PREFIX
    jobs_dir.mkdir(parents=True, exist_ok=True)
    staged = []
    for script in scripts:
        target = jobs_dir / script.name
        shutil.copyfile(script, target)
        staged.append(target)
    staged.append(build_jobs_archive(jobs_dir))
    return [(path, path.relative_to(dest_dir).as_posix()) for path in staged]


def upload_jobs(bucket: str, s3_client: Any) -> list[str]:
    """Upload the job entry points and the carrental archive to s3://bucket/jobs/."""
    with tempfile.TemporaryDirectory() as tmp:
        uploads = stage_jobs(Path(tmp))
        for path, key in uploads:
            s3_client.upload_file(str(path), bucket, key)
    return [f"s3://{bucket}/{key}" for _, key in uploads]


# ---------------------------------------------------------------------------- stack lookup


# Resources are named after the stack; the tightest limit is the EMR Serverless application's
# name, at most 64 characters (CreateApplication.name in the service model), "<stack>-spark":
# https://docs.aws.amazon.com/emr-serverless/latest/APIReference/API_CreateApplication.html
# A test derives every stack-named resource of template.yaml with a name this long.
STACK_NAME_MAX = 64 - len("-spark")


def check_stack_name(stack_name: str) -> str:
    if not 1 <= len(stack_name) <= STACK_NAME_MAX:
        raise DeployError(
            f"stack name {stack_name!r} has {len(stack_name)} characters; at most "
            f"{STACK_NAME_MAX} fit every resource name derived from it (the EMR Serverless "
            "application <stack>-spark may have 64)"
        )
    return stack_name


@dataclass(frozen=True)
class StackTarget:
    stack_name: str | None
    region: str | None


def samconfig_target(config_env: str, samconfig: Path = SAMCONFIG_PATH) -> StackTarget:
    """Stack name and region of a samconfig.toml environment (`sam deploy --config-env`)."""
    config = tomllib.loads(repository_file(samconfig).read_text(encoding="utf-8"))
    params = config.get(config_env, {}).get("deploy", {}).get("parameters", {})
    if "stack_name" not in params:
        known = ", ".join(k for k, v in config.items() if isinstance(v, dict)) or "none"
        raise DeployError(
            f"{samconfig} has no [{config_env}.deploy.parameters] stack_name "
            f"(environments: {known})"
        )
    return StackTarget(check_stack_name(params["stack_name"]), params.get("region"))


def stack_outputs(stack_name: str, cfn_client: Any) -> dict[str, str]:
    from botocore.exceptions import ClientError

    try:
        stacks = cfn_client.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        raise DeployError(
            f"cannot read stack {stack_name!r}: {exc.response['Error']['Message']} "
            "(deploy it first: make deploy)"
        ) from None
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def artifacts_bucket(stack_name: str, cfn_client: Any) -> str:
    outputs = stack_outputs(stack_name, cfn_client)
    if "ArtifactsBucketName" not in outputs:
        raise DeployError(f"stack {stack_name!r} has no ArtifactsBucketName output")
    return outputs["ArtifactsBucketName"]


# ---------------------------------------------------------------------------- SQL in the template


def _logical_id(sql_file: str) -> str:
    return "".join(part.capitalize() for part in Path(sql_file).stem.split("_")) + "NamedQuery"


def _block_scalar(text: str) -> str:
    # `|2-`: content indented two spaces deeper than its key whatever the SQL's first line looks
    # like; trailing blanks dropped (they mean nothing to SQL and YAML tools strip them).
    lines = [f"{' ' * 8}{line}".rstrip() for line in text.rstrip().split("\n")]
    return "\n".join(["|2-", *lines])


def _yaml_single_quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def render_named_queries() -> str:
    from carrental.report import REPORTS, load_sql

    blocks = []
    for report, sql_file in REPORTS.items():
        stem = Path(sql_file).stem
        blocks.append(
            f"  {_logical_id(sql_file)}:\n"
            "    Type: AWS::Athena::NamedQuery\n"
            "    Properties:\n"
            f'      Name: !Sub "${{AWS::StackName}}-{stem}"\n'
            f"      Description: carrental/sql/{sql_file}, behind {report}. Each ? is the run id written as"
            " a quoted string, e.g. 'run-1'.\n"
            "      Database: !Ref GlueDatabase\n"
            "      WorkGroup: !Ref AthenaWorkGroup\n"
            f"      QueryString: {_block_scalar(load_sql(sql_file))}"
        )
    return "\n".join(blocks)


def render_summary_query() -> str:
    from carrental.report import REPORTS, load_sql, query_params

    sql = load_sql(REPORTS["summary.csv"])
    placeholders = len(query_params(sql, "run-id"))
    if placeholders == 0:
        raise DeployError("the summary SQL has no ? placeholder: it would not filter one run")
    # Raw text substitution into a JSON string of the definition: escape it as JSON would.
    escaped = json.dumps(sql, ensure_ascii=False)[1:-1]
    parameters = ", ".join([RUN_ID_LITERAL_PATH] * placeholders)
    return (
        f"        SummaryQuery: {_yaml_single_quoted(escaped)}\n"
        f"        SummaryQueryParameters: {_yaml_single_quoted(parameters)}"
    )


# In an intrinsic function's string literal these characters are escaped with a backslash:
# https://docs.aws.amazon.com/step-functions/latest/dg/intrinsic-functions.html
_INTRINSIC_SPECIAL = re.compile(r"([\\'{}])")


def render_current_views() -> str:
    """The workflow's `States.StringToJson('${CurrentViewQueries}')`: a JSON list of the view
    statements, escaped for the intrinsic's literal, then for the JSON string it sits in."""
    from carrental.publishing import view_sql

    listing = json.dumps([view_sql(table) for table in TABLES], ensure_ascii=False)
    literal = _INTRINSIC_SPECIAL.sub(r"\\\1", listing)
    escaped = json.dumps(literal, ensure_ascii=False)[1:-1]
    return f"        CurrentViewQueries: {_yaml_single_quoted(escaped)}"


def _replace_block(text: str, block: str, body: str) -> str:
    pattern = re.compile(
        rf"(?P<begin>^[ \t]*# BEGIN GENERATED {block}\n).*?(?P<end>^[ \t]*# END GENERATED {block}\n)",
        re.MULTILINE | re.DOTALL,
    )
    if not pattern.search(text):
        raise DeployError(f"template has no '# BEGIN/END GENERATED {block}' markers")
    return pattern.sub(lambda m: f"{m['begin']}{body}\n{m['end']}", text, count=1)


def render_template(text: str) -> str:
    text = _replace_block(text, NAMED_QUERIES_BLOCK, render_named_queries())
    text = _replace_block(text, CURRENT_VIEWS_BLOCK, render_current_views())
    return _replace_block(text, SUMMARY_QUERY_BLOCK, render_summary_query())


def sync_template_sql(template: Path = TEMPLATE_PATH, *, check: bool = False) -> bool:
    """Bring the generated SQL blocks of the template in line with carrental/sql/ and the
    current views; True if they differed.

    With check=True the file is left alone (CI uses it to fail on drift).
    """
    current = repository_file(template).read_text(encoding="utf-8")
    rendered = render_template(current)
    if rendered != current and not check:
        template.write_text(rendered, encoding="utf-8")
    return rendered != current
