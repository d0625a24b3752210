"""Reading report.html back from a browser, for the page tests (local and end to end)."""

from __future__ import annotations

import csv
import struct
from pathlib import Path

from tests.local.chromium import Chromium, LoadedPage

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Every [data-metric] element: the value it claims (data-value) and the text a reader sees.
SHOWN_METRICS = """
[...document.querySelectorAll('[data-metric]')].map(e => [
  e.dataset.metric, e.dataset.value, e.textContent.trim()
])
"""
# Each chart: its canvas, labels and datasets, as Chart.js holds them.
CHARTS = """
Object.fromEntries(Object.values(Chart.instances).map(c => [
  c.canvas.id, {labels: c.data.labels, datasets: c.data.datasets.map(d => d.data)}
]))
"""
# Each canvas and how many of its pixels are painted (0: nothing was drawn).
PAINTED_PIXELS = """
Object.fromEntries([...document.querySelectorAll('canvas')].map(c => {
  const alpha = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let painted = 0;
  for (let i = 3; i < alpha.length; i += 4) { if (alpha[i]) painted++; }
  return [c.id, painted];
}))
"""


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def png_size(png: Path) -> tuple[int, int]:
    data = png.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{png} is not a PNG"
    return struct.unpack(">II", data[16:24])  # IHDR: width, height


def open_report(chromium: Chromium, page: Path, png: Path) -> LoadedPage:
    """Load the page, check it fetched nothing and raised nothing, and capture it to `png`."""
    loaded = chromium.load(page)
    assert loaded.requests == [loaded.url], "the page must not request anything"
    assert loaded.errors == []
    width, height = loaded.screenshot(png)
    assert png_size(png) == (width, height)
    return loaded


def shown_summary(loaded: LoadedPage) -> dict[str, tuple[str, str]]:
    """metric -> (data-value, text shown); each metric must be on the page once."""
    elements = loaded.evaluate(SHOWN_METRICS)
    metrics = [metric for metric, _, _ in elements]
    assert len(metrics) == len(set(metrics)), f"a metric is shown twice: {metrics}"
    return {metric: (value, text) for metric, value, text in elements}


def as_summary_value(text: str, value_type: str) -> str:
    """What summary.csv holds for a text the page shows: '—' is empty; numbers lose their
    thousands separators (the digits and decimals stay as shown)."""
    if text == "—":
        return ""
    return text.replace(",", "") if value_type in ("decimal", "integer") else text


def assert_page_shows_summary(loaded: LoadedPage, summary_csv: Path) -> None:
    summary = read_csv(summary_csv)
    shown = shown_summary(loaded)
    assert sorted(shown) == sorted(row["metric"] for row in summary)
    for row in summary:
        value, text = shown[row["metric"]]
        assert value == row["value"], row["metric"]
        assert as_summary_value(text, row["value_type"]) == row["value"], (row["metric"], text)
