"""Self-contained HTML reports: embedded figures, escaping, a failed figure skipped."""
import logging
from html.parser import HTMLParser

import numpy as np
import pandas as pd

from dsr.report import plots
from dsr.report.html import Report


class _Parse(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs))


def test_report_embeds_figures_and_skips_a_failed_one(tmp_path, caplog):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 3))
    rep = Report("sub-<01> & co")
    rep.heading("a <b>").text("x < y").table(pd.DataFrame({"a": [1.0, np.nan], "b": ["<i>", "z"]}))
    assert rep.figure("spectra", lambda: plots.power_spectra(x, x[::-1], 2.0))
    assert rep.figure("3-D", lambda: plots.attractor_3d(x[:, :2]))

    def boom():
        raise RuntimeError("bad\nfigure")

    with caplog.at_level(logging.WARNING, logger="dsr"):
        assert not rep.figure("broken", boom)
    assert any("broken" in r.getMessage() and "\n" not in r.getMessage() for r in caplog.records)
    path = rep.write(tmp_path / "r.html")
    p = _Parse()
    p.feed(path.read_text())
    assert [i["alt"] for i in p.imgs] == ["spectra", "3-D"] and rep.failed == ["broken"]
    assert all(i["src"].startswith("data:image/png;base64,") for i in p.imgs)
    assert "<i>" not in path.read_text().split("<body>")[1].replace("<img", "")  # user text is escaped
    assert "&lt;i&gt;" in path.read_text() and "table" in p.tags


def test_library_warnings_reach_the_log(caplog):
    """Warnings raised inside logged_warnings are logged once each, not hidden (deprecations at DEBUG)."""
    import warnings

    from dsr.library_warnings import logged_warnings

    with caplog.at_level(logging.DEBUG, logger="dsr"):
        with logged_warnings("nilearn"):
            for _ in range(3):
                warnings.warn("the mask\nis empty", UserWarning)
            warnings.warn("old API", DeprecationWarning)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert lines == [(logging.INFO, "nilearn: UserWarning: the mask is empty"),
                     (logging.DEBUG, "nilearn: DeprecationWarning: old API")]
