"""What the validator says about one file: the verdict, its reasons, and the row-rule counts.

`FileVerdict.to_dict()` is the JSON written beside a quarantined file as `<file>.errors.json`
(and what `carrental validate --json` prints); `FileVerdict.render()` is the human text.
Row numbers: row 1 = the first data row after the header (as in defects.json).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from carrental.contracts import DATASETS

MAX_EXAMPLES = 10
# Example values are for people reading an alert: a pathological 50 MB field is cut short.
MAX_EXAMPLE_CHARS = 200

Example = tuple[int, str]  # (row number, value as written in the file)


def shorten(value: str) -> str:
    if len(value) <= MAX_EXAMPLE_CHARS:
        return value
    return f"{value[:MAX_EXAMPLE_CHARS]}… ({len(value):,} characters)"


@dataclass(frozen=True)
class Problem:
    """One reason a file is rejected. `rule` is a contract rule name for row rules
    (e.g. ``rental_start_time_format``) or a file-level check (e.g. ``not_utf8``)."""

    rule: str
    message: str
    column: str | None = None
    examples: tuple[Example, ...] = ()

    def to_dict(self) -> dict:
        return {
            "rule": self.rule,
            "column": self.column,
            "message": self.message,
            "examples": [{"row": row, "value": value} for row, value in self.examples],
        }


@dataclass
class FileVerdict:
    source: str
    dataset: str
    accepted: bool
    rows: int
    bytes: int
    problems: list[Problem] = field(default_factory=list)
    # Every single-dataset row rule of the contract that was checked -> rows breaking it.
    rule_counts: dict[str, int] = field(default_factory=dict)
    rule_examples: dict[str, list[Example]] = field(default_factory=dict)
    reject_threshold: float = 0.05
    # Rows breaking at least one reject rule: Spark sends these to rental_rejects.
    rejected_rows: int = 0
    # SHA-256 of the file's bytes, for an accepted file (read to the end): its content's identity.
    sha256: str | None = None

    @property
    def reason(self) -> str:
        """One line for alerts and logs: the first problems, or what an accepted file holds."""
        if self.accepted:
            return (
                f"{self.rows:,} rows, {self.rejected_rows:,} of them breaking a reject rule "
                "(under the threshold)"
            )
        return "; ".join(p.message for p in self.problems[:3]) + (
            f" (and {len(self.problems) - 3} more problems)" if len(self.problems) > 3 else ""
        )

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "dataset": self.dataset,
            "verdict": "accepted" if self.accepted else "rejected",
            "accepted": self.accepted,
            "rows": self.rows,
            "bytes": self.bytes,
            "reject_threshold": self.reject_threshold,
            "rejected_rows": self.rejected_rows,
            "sha256": self.sha256,
            "problems": [p.to_dict() for p in self.problems],
            "rule_counts": dict(self.rule_counts),
            "rule_examples": {
                rule: [{"row": row, "value": value} for row, value in examples]
                for rule, examples in self.rule_examples.items()
            },
        }

    def render(self) -> str:
        verdict = "ACCEPTED" if self.accepted else "REJECTED"
        lines = [
            f"{self.source}: {verdict} ({self.dataset}, {self.rows:,} rows read, "
            f"{_size(self.bytes)})"
        ]
        for problem in self.problems:
            where = f" [column {problem.column}]" if problem.column else ""
            lines.append(f"  - {problem.rule}{where}: {problem.message}")
            lines += [f"      row {row}: {value!r}" for row, value in problem.examples]
        broken = {rule: n for rule, n in self.rule_counts.items() if n}
        if self.accepted and self.rejected_rows:
            lines.append(
                f"  {self.rejected_rows:,} rows ({_percent(self.rejected_rows, self.rows)}) break "
                f"a reject rule: under the {self.reject_threshold:.1%} threshold, so the file is "
                "accepted and the Spark jobs keep those rows out of the metrics"
            )
        if broken:
            contract = DATASETS[self.dataset]  # rules were counted: the dataset is known
            lines.append("  row rules broken:")
            for rule, count in broken.items():
                severity = contract.rule(rule).severity
                lines.append(f"    {rule:<36} {severity:<7} {count:>10,}")
                if self.accepted:
                    lines += [
                        f"      row {row}: {value!r}" for row, value in self.rule_examples[rule][:3]
                    ]
        return "\n".join(lines)


def _size(n: int) -> str:
    value, unit = float(n), "bytes"
    for bigger in ("KB", "MB", "GB"):
        if value < 1000:
            break
        value, unit = value / 1000, bigger
    return f"{n:,} bytes" if unit == "bytes" else f"{value:.1f} {unit}"


def _percent(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "0%"
