"""The `carrental` command line."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from carrental import __version__


def _generate(args: argparse.Namespace) -> int:
    from carrental.generate import generate

    started = time.perf_counter()
    counts = generate(args.out, scale=args.scale, seed=args.seed, dirty_rate=args.dirty_rate)
    elapsed = time.perf_counter() - started
    rows = ", ".join(f"{name} {count:,}" for name, count in counts.items() if name != "defects")
    print(f"wrote {args.out}/: {rows} rows in {elapsed:.1f} s")
    if counts["defects"]:
        print(f"injected {counts['defects']:,} defects, listed in {args.out / 'defects.json'}")
    return 0


def _contracts(args: argparse.Namespace) -> int:
    from carrental.contracts import to_markdown

    print(to_markdown(), end="")
    return 0


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carrental", description="Car-rental analytics pipeline, locally or on AWS."
    )
    parser.add_argument("--version", action="version", version=f"carrental {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = commands.add_parser(
        "generate", help="write a synthetic batch of the four CSVs, shaped like the lab data"
    )
    gen.add_argument("--out", type=Path, required=True, help="output folder")
    gen.add_argument(
        "--scale",
        type=_non_negative_float,
        default=1.0,
        help="1 = the lab's sizes (~20k rentals); rentals grow linearly, dimensions sub-linearly",
    )
    gen.add_argument("--seed", type=int, default=42, help="same seed => byte-identical files")
    gen.add_argument(
        "--dirty-rate",
        type=_non_negative_float,
        default=0.0,
        help="fraction of rental rows to corrupt; the defects are listed in defects.json",
    )
    gen.set_defaults(handler=_generate)

    docs = commands.add_parser("contracts", help="print the dataset contracts as Markdown")
    docs.set_defaults(handler=_contracts)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ValueError as exc:
        print(f"carrental {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
