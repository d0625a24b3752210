"""Shipping the code: the carrental archive, the upload to the stack's bucket, SQL in the template."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile

import boto3
import pytest
from moto import mock_aws

from carrental import report
from carrental.cli import main
from carrental.deploy import (
    DeployError,
    StackTarget,
    build_jobs_archive,
    job_names,
    samconfig_target,
    sync_template_sql,
    upload_jobs,
)
from carrental.lake import TABLES
from carrental.report import REPORTS, load_sql
from tests.aws.conftest import REGION
from tests.aws.template import REPO_ROOT, TEMPLATE_PATH, load_template

BUCKET = "carrental-artifacts"


def test_the_archive_holds_every_module_of_the_package(tmp_path) -> None:
    archive = build_jobs_archive(tmp_path)
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
    modules = {
        p.relative_to(REPO_ROOT).as_posix()
        for p in (REPO_ROOT / "carrental").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert names == modules
    assert {"carrental/__init__.py", "carrental/lake.py", "carrental/spark/jobs.py"} <= names


def test_the_archive_is_byte_identical_for_identical_sources(tmp_path) -> None:
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first = build_jobs_archive(tmp_path / "first")
    second = build_jobs_archive(tmp_path / "second")
    assert first.read_bytes() == second.read_bytes()


def test_python_imports_carrental_from_the_archive_alone(tmp_path) -> None:
    archive = build_jobs_archive(tmp_path)
    # -I: no current directory, no PYTHONPATH, no user site; only the archive provides carrental.
    probe = (
        f"import sys; sys.path.insert(0, {str(archive)!r}); import carrental.lake as lake; "
        "print(lake.__file__); print(sorted(set(lake.TABLES.values())))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    module_file, jobs = result.stdout.splitlines()
    assert module_file == f"{archive}/carrental/lake.py"
    assert jobs == str(job_names())


def test_upload_puts_the_entry_points_and_the_archive_under_jobs(tmp_path) -> None:
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        uploaded = upload_jobs(BUCKET, s3)
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
        for job in sorted(set(TABLES.values())):
            body = s3.get_object(Bucket=BUCKET, Key=f"jobs/{job}.py")["Body"].read()
            assert body == (REPO_ROOT / "emr_jobs" / f"{job}.py").read_bytes()
        archive = s3.get_object(Bucket=BUCKET, Key="jobs/carrental.zip")["Body"].read()
    assert keys == {f"jobs/{job}.py" for job in job_names()} | {"jobs/carrental.zip"}
    assert uploaded == [f"s3://{BUCKET}/{key}" for key in sorted(keys - {"jobs/carrental.zip"})] + [
        f"s3://{BUCKET}/jobs/carrental.zip"
    ]
    assert archive == build_jobs_archive(tmp_path).read_bytes()


def test_deploy_jobs_out_writes_exactly_what_a_deploy_uploads(tmp_path, capsys) -> None:
    out = tmp_path / "shipped"
    probe = (
        "import sys; from carrental.cli import main; code = main(['deploy-jobs', '--out', "
        f"{str(out)!r}]); print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('boto3', 'botocore'))); sys.exit(code)"
    )
    offline = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert offline.stdout.splitlines()[-1] == "[]"  # no AWS library, so no AWS call
    written = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        upload_jobs(BUCKET, s3)
        uploaded = {
            o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
            for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]
        }
    assert written == uploaded


def _stack_with_artifacts_bucket(name: str) -> None:
    template = {
        "Resources": {
            "Artifacts": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": BUCKET}}
        },
        "Outputs": {"ArtifactsBucketName": {"Value": {"Ref": "Artifacts"}}},
    }
    boto3.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))


def test_deploy_jobs_uploads_to_the_bucket_named_by_the_stack(capsys) -> None:
    with mock_aws():
        _stack_with_artifacts_bucket("carrental-test")
        code = main(["deploy-jobs", "--stack-name", "carrental-test", "--region", REGION])
        keys = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert code == 0
    assert "jobs/carrental.zip" in keys and len(keys) == len(job_names()) + 1
    assert f"uploaded s3://{BUCKET}/jobs/carrental.zip" in capsys.readouterr().out


def test_deploy_jobs_names_a_stack_that_is_not_there(capsys) -> None:
    with mock_aws():
        code = main(["deploy-jobs", "--stack-name", "never-deployed", "--region", REGION])
    assert code == 1
    error = capsys.readouterr().err
    assert "never-deployed" in error and "make deploy" in error


def test_deploy_jobs_reports_an_aws_error_in_one_line(capsys) -> None:
    with mock_aws():
        code = main(["deploy-jobs", "--bucket", "no-such-bucket", "--region", REGION])
    assert code == 1
    error = capsys.readouterr().err
    assert error.startswith("carrental deploy-jobs: ") and "no-such-bucket" in error


def test_samconfig_environments_name_the_stack() -> None:
    assert samconfig_target("dev") == StackTarget("carrental-dev", "us-east-1")
    assert samconfig_target("prod").stack_name == "carrental-prod"
    with pytest.raises(DeployError, match="staging"):
        samconfig_target("staging")


def test_the_template_follows_an_edited_query(tmp_path, monkeypatch) -> None:
    template = tmp_path / "template.yaml"
    shutil.copy(TEMPLATE_PATH, template)
    sql_dir = tmp_path / "sql"
    shutil.copytree(REPO_ROOT / "carrental" / "sql", sql_dir)
    summary_file = REPORTS["summary.csv"]
    edited = load_sql(summary_file).replace(
        "SELECT metric, value, value_type\nFROM metrics",
        "SELECT metric, value, value_type\nFROM metrics\nWHERE ? <> ''",
    )
    assert edited != load_sql(summary_file)
    (sql_dir / summary_file).write_text(edited, encoding="utf-8")
    monkeypatch.setattr(report, "SQL_DIR", sql_dir)
    before = template.read_text()

    assert sync_template_sql(template, check=True) is True
    assert template.read_text() == before
    assert sync_template_sql(template) is True
    assert sync_template_sql(template) is False

    resources = load_template(template)["Resources"]
    assert resources["SummaryReportNamedQuery"]["Properties"]["QueryString"] == edited.rstrip()
    substitutions = resources["CarRentalPipeline"]["Properties"]["DefinitionSubstitutions"]
    assert json.loads(f'"{substitutions["SummaryQuery"]}"') == edited
    assert substitutions["SummaryQueryParameters"].count("run_id_literal") == 6
