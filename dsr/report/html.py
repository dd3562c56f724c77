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

_STYLE = """body{font-family:sans-serif;max-width:1120px;margin:1em auto;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:1.5em}h3{font-size:1.05em}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:0.8em;margin:0.5em 0}td,th{border:1px solid #ddd;padding:2px 6px;
text-align:left;vertical-align:top}th{background:#f3f3f3}
figure{display:inline-block;margin:0.5em;max-width:100%;vertical-align:top}figure img{max-width:100%}
figcaption{font-size:0.85em;color:#444;max-width:700px}
dl.summary{display:grid;grid-template-columns:max-content auto;gap:2px 1em;font-size:0.9em;
background:#f7f7f7;padding:0.6em;border:1px solid #ddd}dl.summary dt{font-weight:bold}dl.summary dd{margin:0;
overflow-wrap:anywhere}
nav ul{columns:4 12em;font-size:0.9em}.warn{color:#a33}.na{color:#777;font-style:italic}
.ok{color:#2a7}.failed{color:#a33;font-weight:bold}.refs{font-size:0.85em}"""


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

    def heading(self, text: str, anchor: str | None = None, level: int = 2) -> "Report":
        """A section heading (``anchor``: its id, for links)."""
        ident = f' id="{html.escape(anchor)}"' if anchor else ""
        self.parts.append(f"<h{level}{ident}>{html.escape(text)}</h{level}>")
        return self

    def text(self, text: str, css: str | None = None) -> "Report":
        """A paragraph of escaped text (``css``: its class, e.g. ``na`` or ``warn``)."""
        cls = f' class="{css}"' if css else ""
        self.parts.append(f"<p{cls}>{html.escape(text)}</p>")
        return self

    def unavailable(self, what: str, reason: str) -> "Report":
        """Say that a piece of the report is not available, and why."""
        return self.text(f"{what}: not available ({reason}).", "na")

    def summary(self, items: dict[str, str], anchor: str = "summary") -> "Report":
        """A definition list of key facts (escaped), under its own heading."""
        rows = "".join(f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(str(v))}</dd>" for k, v in items.items())
        self.parts.append(f'<section id="{anchor}"><h2>Summary</h2><dl class="summary">{rows}</dl></section>')
        return self

    def links(self, items: list[tuple[str, str]], anchor: str = "links", title: str = "Reports") -> "Report":
        """A list of links ``(href, text)`` (relative paths) under its own heading."""
        lis = "".join(f'<li><a href="{html.escape(h)}">{html.escape(t)}</a></li>' for h, t in items)
        self.parts.append(f'<nav id="{anchor}"><h2>{html.escape(title)}</h2><ul>{lis}</ul></nav>')
        return self

    def references(self, refs: list[str]) -> "Report":
        """A numbered reference list."""
        self.parts.append('<ol class="refs">' + "".join(f"<li>{html.escape(r)}</li>" for r in refs) + "</ol>")
        return self

    def table(self, df: pd.DataFrame, max_rows: int = 200, float_format: str = "{:.4g}",
              css: str | None = None) -> "Report":
        """An escaped HTML table of a DataFrame (first ``max_rows`` rows) in a horizontally scrolling box."""
        def cell(v):
            if isinstance(v, (float, np.floating)):
                return "n/a" if not np.isfinite(v) else float_format.format(v)
            return html.escape(str(v))

        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
        body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>"
                       for row in df.head(max_rows).itertuples(index=False))
        cls = f' class="{css}"' if css else ""
        self.parts.append(f'<div class="scroll"><table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
                          "</table></div>")
        if len(df) > max_rows:
            self.text(f"(first {max_rows} of {len(df)} rows)", "na")
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
