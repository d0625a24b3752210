"""benchmarks/lab_check.py needs the lab data folder: without it, it says so and starts nothing."""

import subprocess
import sys

from tests.conftest import REPO_ROOT

# Run the check's main() and report whether pyspark got imported on the way.
PROBE = """
import sys
sys.path.insert(0, "benchmarks")
import lab_check
code = lab_check.main(sys.argv[1:])
print("pyspark loaded:", "pyspark" in sys.modules)
sys.exit(code)
"""


def run_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_a_folder_it_asks_for_one():
    result = run_check()
    assert result.returncode == 2
    assert "the following arguments are required: data" in result.stderr


def test_a_missing_folder_is_named_before_spark_starts(tmp_path):
    result = run_check(str(tmp_path / "lab_data"))
    assert result.returncode == 2
    assert f"{tmp_path / 'lab_data'} is not a folder" in result.stderr
    assert "pyspark loaded: False" in result.stdout


def test_a_folder_without_the_csvs_names_the_missing_files(tmp_path):
    (tmp_path / "users.csv").write_text("user_id\n")
    result = run_check(str(tmp_path))
    assert result.returncode == 2
    assert "lacks vehicles.csv, locations.csv, rental_transactions.csv" in result.stderr
    assert "pyspark loaded: False" in result.stdout
