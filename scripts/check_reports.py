"""Open every HTML report of an output folder in headless Chromium and check it.

    python scripts/check_reports.py OUTPUT_DIR [--screenshot DIR]

For each ``group.html`` / ``sub-*.html``: the page loads, the browser logs no console error, every listed
figure (``dsr.report.subject.SUBJECT_FIGURES`` / ``dsr.report.group.GROUP_FIGURES``) is in the rendered DOM
as a decodable PNG image, the page has its summary block, and every link to another report (or to an anchor
of the page) resolves. Exit 0 when all pass, 1 otherwise. Needs Debian's ``chromium``.
"""
from __future__ import annotations

import argparse
import base64
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dsr.report.group import GROUP_FIGURES  # noqa: E402
from dsr.report.subject import SUBJECT_FIGURES  # noqa: E402

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=3000"]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def check_page(browser: str, page: Path, expected: tuple[str, ...], screenshot: Path | None = None) -> list[str]:
    """Problems found in one report (empty when it passes)."""
    with tempfile.TemporaryDirectory() as profile:
        args = [browser, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.resolve().as_uri()]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
        if screenshot is not None:
            subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", "--window-size=1200,3000",
                            f"--screenshot={screenshot}", page.resolve().as_uri()],
                           capture_output=True, text=True, timeout=120)
    problems = []
    if proc.returncode != 0 or "<body" not in proc.stdout:
        problems.append(f"did not load (exit {proc.returncode})")
    console = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    problems += [f"console: {ln.strip()[:200]}" for ln in console]
    images = dict(re.findall(r'<img alt="([^"]+)"[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', proc.stdout))
    if "<body" in proc.stdout:
        problems += link_problems(page, proc.stdout, require_summary=bool(expected))
    for name in expected:
        if name not in images:
            problems.append(f"figure missing: {name}")
        elif not base64.b64decode(images[name]).startswith(b"\x89PNG"):
            problems.append(f"figure not a PNG: {name}")
    return problems


def link_problems(page: Path, dom: str, require_summary: bool = True) -> list[str]:
    """A missing summary block, links to reports that do not exist and anchors the page does not have."""
    problems = []
    if require_summary and 'id="summary"' not in dom:
        problems.append("no summary block")
    ids = set(re.findall(r'\sid="([^"]+)"', dom))
    for href in re.findall(r'<a href="([^"]+)"', dom):
        if href.startswith("#"):
            if href[1:] not in ids:
                problems.append(f"broken anchor: {href}")
        elif "://" not in href and not (page.parent / href.split("#")[0]).is_file():
            problems.append(f"broken link: {href}")
    return problems


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("output_dir", type=Path)
    p.add_argument("--screenshot", type=Path, default=None, help="folder for a PNG screenshot of each page")
    args = p.parse_args()
    browser = chromium()
    if browser is None:
        print("check_reports: chromium not found (apt-get install chromium)", file=sys.stderr)
        return 1
    pages = sorted(args.output_dir.glob("group.html")) + sorted(args.output_dir.glob("sub-*.html"))
    if not pages:
        print(f"check_reports: no reports in {args.output_dir}", file=sys.stderr)
        return 1
    failed = 0
    for page in pages:
        expected = GROUP_FIGURES if page.name == "group.html" else SUBJECT_FIGURES
        shot = None
        if args.screenshot is not None:
            args.screenshot.mkdir(parents=True, exist_ok=True)
            shot = args.screenshot / f"{page.stem}.png"
        problems = check_page(browser, page, expected, shot)
        failed += bool(problems)
        print(f"{page.name}: {'ok' if not problems else '; '.join(problems)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
