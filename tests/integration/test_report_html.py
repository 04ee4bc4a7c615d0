"""The HTML report in a real headless Chromium (Debian package ``chromium``): every chart renders.

No broker needed, but a real browser is: the test fails (never skips) when ``chromium`` is not installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from pipeline.reports import html
from pipeline.reports.model import collect
from sinks.snapshot import open_snapshot
from tests.unit.test_report import build_snapshot

BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=3000"]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "headless Chromium is required: apt-get install -y chromium"
    return path


def test_html_report_renders_every_chart_in_chromium(tmp_path: Path) -> None:
    with open_snapshot(build_snapshot(tmp_path)) as con:
        page = tmp_path / "report.html"
        page.write_text(html.render(collect(con)), encoding="utf-8")
    url = page.as_uri()
    dom = subprocess.run(
        [chromium(), *BROWSER_FLAGS, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    marks = dict(re.findall(r'data-chart="(\w+)" data-marks="(\d+)"', dom))
    assert set(marks) == set(html.CHARTS), dom[-2000:]
    assert all(int(n) > 0 for n in marks.values()), marks
    assert f'data-charts="{len(html.CHARTS)}"' in dom

    # Readable at 700 px: charts shrink with the page and wide tables scroll in their own box, so the page
    # itself never scrolls sideways.
    narrow = subprocess.run(
        [chromium(), *BROWSER_FLAGS, "--window-size=700,2000", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    width = re.search(r'data-page-width="(\d+)"', narrow)
    assert width is not None and int(width[1]) <= 700, narrow[-2000:]

    shot = tmp_path / "report.png"
    subprocess.run(
        [chromium(), *BROWSER_FLAGS, f"--screenshot={shot}", "--window-size=1100,7000", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
