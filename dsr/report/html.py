"""Self-contained HTML reports: text, tables and PNG figures embedded as base64 data URIs.

A figure is given as a callable returning PNG bytes; when it raises, the failure is logged in one line,
noted in the report, and the report goes on.
"""
from __future__ import annotations

import base64
import html
import logging
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from dsr.io.atomic import atomic_write_text

log = logging.getLogger("dsr")

_STYLE = """body{font-family:sans-serif;max-width:1100px;margin:1em auto;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:0.8em;margin:0.5em 0}td,th{border:1px solid #ddd;padding:2px 6px}
th{background:#f3f3f3}figure{display:inline-block;margin:0.5em}figcaption{font-size:0.8em;color:#555}
.warn{color:#a33}"""


class Report:
    """An HTML report built section by section.

    Parameters
    ----------
    title : str
    """

    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = []
        self.figures: list[str] = []  # names of the figures that made it in
        self.failed: list[str] = []

    def heading(self, text: str) -> "Report":
        self.parts.append(f"<h2>{html.escape(text)}</h2>")
        return self

    def text(self, text: str) -> "Report":
        self.parts.append(f"<p>{html.escape(text)}</p>")
        return self

    def table(self, df: pd.DataFrame, max_rows: int = 200, float_format: str = "{:.4g}") -> "Report":
        """An escaped HTML table of a DataFrame (first ``max_rows`` rows)."""
        def cell(v):
            if isinstance(v, (float, np.floating)):
                return "n/a" if not np.isfinite(v) else float_format.format(v)
            return html.escape(str(v))

        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
        body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>"
                       for row in df.head(max_rows).itertuples(index=False))
        self.parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        return self

    def figure(self, name: str, make: Callable[[], bytes], caption: str = "") -> bool:
        """Embed the PNG that ``make()`` returns; a failure is logged, noted and skipped. Returns success."""
        try:
            png = make()
            if not png.startswith(b"\x89PNG"):
                raise ValueError("not a PNG")
        except Exception as exc:  # a figure never aborts a report
            log.warning("%s: figure '%s' skipped: %s: %s", self.title, name, type(exc).__name__,
                        " ".join(str(exc).split()))
            self.failed.append(name)
            self.parts.append(f'<p class="warn">figure {html.escape(name)} could not be drawn</p>')
            return False
        b64 = base64.b64encode(png).decode("ascii")
        self.parts.append(f'<figure><img alt="{html.escape(name)}" title="{html.escape(name)}" '
                          f'src="data:image/png;base64,{b64}"><figcaption>{html.escape(caption or name)}'
                          "</figcaption></figure>")
        self.figures.append(name)
        return True

    def render(self) -> str:
        t = html.escape(self.title)
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{t}</title><style>{_STYLE}</style></head><body><h1>{t}</h1>\n"
                + "\n".join(self.parts) + "\n</body></html>\n")

    def write(self, path: str | Path) -> Path:
        """Write the report atomically."""
        return atomic_write_text(path, self.render())
