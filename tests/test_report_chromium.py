"""Reports in a real headless Chromium (skipped where Debian's chromium is not installed)."""
import io
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
check_reports = pytest.importorskip("check_reports")
if check_reports.chromium() is None:
    pytest.skip("chromium is not installed", allow_module_level=True)

from dsr.report.html import Report  # noqa: E402


def _png() -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [1, 0])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def test_report_loads_with_every_figure(tmp_path):
    rep = Report("t")
    rep.summary({"software": "dsr"})
    (tmp_path / "sub-01.html").write_text("<!DOCTYPE html><html><body>s</body></html>")
    rep.links([("sub-01.html", "sub-01"), ("#summary", "top")])
    for name in ("a", "b"):
        rep.figure(name, _png)
    page = rep.write(tmp_path / "group.html")
    assert check_reports.check_page(check_reports.chromium(), page, ("a", "b")) == []
    problems = check_reports.check_page(check_reports.chromium(), page, ("a", "b", "c"))
    assert problems == ["figure missing: c"]


def test_missing_summary_and_broken_links_are_caught(tmp_path):
    rep = Report("t")
    rep.links([("sub-09.html", "gone"), ("#nowhere", "anchor")])
    rep.figure("a", _png)
    page = rep.write(tmp_path / "group.html")
    problems = check_reports.check_page(check_reports.chromium(), page, ("a",))
    assert problems == ["no summary block", "broken link: sub-09.html", "broken anchor: #nowhere"]


def test_console_error_is_caught(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body><p>x</p><script>undefinedFunction();</script></body></html>")
    problems = check_reports.check_page(check_reports.chromium(), page, ())
    assert any("console" in p for p in problems), problems
