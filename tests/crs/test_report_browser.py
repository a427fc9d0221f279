"""report.html in a real browser: headless Chromium decodes every embedded plot, lays out the tables, and
the screenshot shows the plots' colours and the best-value highlight (not just a file that exists).

Chromium is Debian's ``chromium`` package (``.ci/run`` installs it); under CI=true its absence fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib import colors as mcolors
from matplotlib import image as mimage

from crs.app.evaluation import run_evaluation
from crs.report import build_report, write_report

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
BEST_CELL = "#dff3e4"  # td.best background (--best) in crs/report/report.css

CHECK_SCRIPT = """
<script>
window.addEventListener("load", () => {
  const images = Array.from(document.querySelectorAll("img[data-plot]"));
  const result = {
    images: images.map((img) => ({plot: img.dataset.plot, complete: img.complete,
                                  width: img.naturalWidth, height: img.naturalHeight,
                                  shown: img.getBoundingClientRect().width})),
    rows: document.querySelectorAll("table.comparison tbody tr").length,
    best: document.querySelectorAll("table.comparison td.best").length,
    table_width: document.querySelector("table.comparison").getBoundingClientRect().width,
    answer: document.querySelector("#answer").innerText,
  };
  const out = document.createElement("pre");
  out.id = "browser-check";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>
"""


def chromium() -> str:
    """The Chromium binary; skip locally, fail under CI=true, when it is missing."""
    path = "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else shutil.which("chromium")
    if path is None:
        message = "chromium not found (apt-get install -y chromium; .ci/run installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def run_chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    command = [chromium(), *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> tuple[Path, dict[str, str], int]:
    root = tmp_path_factory.mktemp("browser")
    inputs = []
    for policy in ("ask-4", "max-entropy"):
        run_evaluation(policy, episodes=40, seed=1, out=root / policy, show_progress=False)
        inputs.append(root / policy)
    report = build_report(inputs, root / "report", examples=2)
    write_report(report)
    n_best = sum(len(row.best) for row in report.tables[0].rows)
    return root / "report", report.colors, n_best


def test_plots_decode_and_the_table_lays_out_in_chromium(report_dir, tmp_path) -> None:
    out, _, n_best = report_dir
    page = out / "report_check.html"
    page.write_text((out / "report.html").read_text().replace("</body>", CHECK_SCRIPT + "</body>"))
    result = run_chromium(
        ["--window-size=1280,2000", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
        tmp_path / "profile",
    )
    match = re.search(r'<pre id="browser-check">(.*?)</pre>', result.stdout, re.S)
    assert match is not None, result.stderr[-2000:]
    check = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    plots = {img["plot"] for img in check["images"]}
    assert plots == {"sr_curves", "turns", "action_mix"}
    for img in check["images"]:
        # A decoded PNG has its intrinsic size (matplotlib at 110 dpi: hundreds of pixels) and is laid out.
        assert img["complete"] and img["width"] > 300 and img["height"] > 200 and img["shown"] > 300, img
    assert check["rows"] == 2 and check["best"] == n_best > 0
    assert check["table_width"] > 800
    assert "needs a trained full model and its ablations" in check["answer"]


def _near(pixels: np.ndarray, color: str, tolerance: float = 12.0) -> int:
    target = np.array(mcolors.to_rgb(color)) * 255
    return int((np.abs(pixels - target).max(axis=-1) <= tolerance).sum())


def test_screenshot_shows_plots_and_highlighted_table(report_dir, tmp_path) -> None:
    out, colors, _ = report_dir
    shot = tmp_path / "report.png"
    result = run_chromium(
        [
            f"--screenshot={shot}",
            "--window-size=1280,2000",
            "--hide-scrollbars",
            (out / "report.html").as_uri(),
        ],
        tmp_path / "profile",
    )
    assert shot.is_file(), result.stderr[-2000:]
    pixels = mimage.imread(shot)[..., :3] * 255.0  # (2000, 1280, 3)
    assert pixels.shape[:2] == (2000, 1280)
    # The best cells' green fills whole table cells: thousands of pixels.
    assert _near(pixels, BEST_CELL, 3) > 2000
    # Each policy's plot colour (lines, markers, bars) appears in the rendered plots.
    for label in ("ask-4", "max-entropy"):
        assert _near(pixels, colors[label]) > 300, label
    # The page is not blank: a good share of pixels is neither white nor the page background.
    background = np.array(mcolors.to_rgb("#f5f6f8")) * 255
    inked = (np.abs(pixels - 255).max(axis=-1) > 40) & (np.abs(pixels - background).max(axis=-1) > 40)
    assert inked.mean() > 0.03
