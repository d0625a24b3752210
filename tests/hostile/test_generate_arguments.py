"""Issue 12, item 6: `carrental generate` checks its arguments before writing anything (exit 2,
one consistent message), and asks for --yes, with the estimated size, above 2 GB."""

from __future__ import annotations

import pytest

from carrental import cli
from carrental.cli import main
from carrental.generate import estimated_bytes
from tests.hostile.conftest import run_cli


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--scale", "inf"], "argument --scale: must be a finite number, got inf"),
        (["--scale", "nan"], "argument --scale: must be a finite number, got nan"),
        (["--scale", "0"], "argument --scale: must be > 0, got 0"),
        (["--scale", "-1"], "argument --scale: must be > 0, got -1"),
        (["--scale", "1e400"], "argument --scale: must be a finite number, got 1e400"),
        (["--scale", "1e13"], "argument --scale: must be at most 1e+12, got 1e13"),
        (["--scale", "ten"], "argument --scale: must be a number, got 'ten'"),
        (["--dirty-rate", "0.6"], "argument --dirty-rate: must be between 0 and 0.5, got 0.6"),
        (["--dirty-rate", "-0.1"], "argument --dirty-rate: must be between 0 and 0.5, got -0.1"),
        (["--dirty-rate", "nan"], "argument --dirty-rate: must be a finite number, got nan"),
        (["--seed", "-1"], "argument --seed: must be >= 0, got -1"),
        (["--seed", "1.5"], "argument --seed: must be a whole number, got '1.5'"),
    ],
)
def test_bad_arguments_exit_2_with_one_message(tmp_path, capsys, arguments, message):
    out = tmp_path / "batch"
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--out", str(out), *arguments])
    assert exc.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"carrental generate: error: {message}"
    assert not out.exists()


def test_out_an_existing_file_is_a_usage_error(tmp_path):
    existing = tmp_path / "a-file"
    existing.write_text("keep me")
    result = run_cli("generate", "--out", str(existing), "--scale", "0.01")
    assert result.returncode == 2 and b"Traceback" not in result.stderr
    assert result.stderr.decode().splitlines()[-1] == (
        f"carrental generate: error: argument --out: {existing} exists and is not a folder"
    )
    assert existing.read_text() == "keep me"


def test_an_absurd_scale_is_refused_with_its_size_even_with_yes(tmp_path):
    result = run_cli("generate", "--out", str(tmp_path / "b"), "--scale", "1e9", "--yes")
    assert result.returncode == 2
    (line,) = result.stderr.decode().splitlines()
    # 20,080 rentals at scale 1, linear: 2.008e13 rentals; rentals alone are ~91 bytes a row
    assert line.startswith(
        "carrental generate: error: --scale 1e+09 would write about 1.8 PB "
        "(20,080,000,000,000 rentals), but "
    )
    assert line.endswith(" free")
    assert not (tmp_path / "b").exists()


def test_a_large_batch_needs_yes(tmp_path, capsys, monkeypatch):
    """The 2 GB threshold lowered to 1 MB so that a confirmed batch stays small to write."""
    monkeypatch.setattr(cli, "CONFIRM_ABOVE_BYTES", 1e6)
    out = tmp_path / "batch"
    assert main(["generate", "--out", str(out), "--scale", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "--scale 0.1 would write about 2.5 MB (2,008 rentals)" in err
    assert "pass --yes to go ahead (asked above 1.0 MB)" in err
    assert not out.exists()
    assert main(["generate", "--out", str(out), "--scale", "0.1", "--yes"]) == 0
    assert (out / "rental_transactions.csv").exists()


def test_the_size_estimate_matches_what_is_written(clean_batch):
    """clean_batch is --scale 0.2 (tests/conftest.py)."""
    written = sum(path.stat().st_size for path in clean_batch.glob("*.csv"))
    assert abs(estimated_bytes(0.2) / written - 1) < 0.05
