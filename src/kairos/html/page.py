"""One self-contained HTML page assembled from sections: headings, facts, plotly figures and tables.

plotly.js is inlined once in the page's head and every figure is a div drawn by it, so the
page works offline from a file:// URL. The same inputs give the same bytes: figures get
fixed ids and plotly's JSON is deterministic.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from kairos.errors import KairosError

STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1320px; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0.5em 0; }
dl.facts dt { color: #666; }
dl.facts dd { margin: 0; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f4f4f4; }
td:first-child, th:first-child { text-align: left; }
p.note { color: #666; font-size: 0.9em; }
"""


def require_plotly() -> ModuleType:
    """plotly, or a one-line error naming the extra that installs it."""
    try:
        import plotly
    except ImportError:
        raise KairosError("HTML reports need plotly: pip install 'kairos[html]'") from None
    return plotly


class Page:
    """A page built section by section, in order; `html()` renders it whole."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._sections: list[str] = []
        self.figure_ids: list[str] = []

    def heading(self, text: str) -> None:
        self._sections.append(f"<h2>{html.escape(text)}</h2>")

    def note(self, text: str) -> None:
        self._sections.append(f'<p class="note">{html.escape(text)}</p>')

    def facts(self, items: Sequence[tuple[str, str]]) -> None:
        """A list of label: value pairs."""
        rows = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in items)
        self._sections.append(f'<dl class="facts">{rows}</dl>')

    def table(self, table_id: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """A table; floats are shown with four significant digits."""
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>" for row in rows)
        self._sections.append(f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')

    def figure(self, div_id: str, figure: Any) -> None:
        """A plotly figure, drawn into a div of this id by the page's one copy of plotly.js."""
        import plotly.io

        self.figure_ids.append(div_id)
        self._sections.append(plotly.io.to_html(
            figure, full_html=False, include_plotlyjs=False, div_id=div_id,
            config={"displaylogo": False, "responsive": True}))

    def html(self) -> str:
        import plotly.offline

        return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
                f"<title>{html.escape(self.title)}</title>\n<style>{STYLE}</style>\n"
                f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>\n</head>\n<body>\n'
                f"<h1>{html.escape(self.title)}</h1>\n" + "\n".join(self._sections) + "\n</body>\n</html>\n")

    def write(self, path: str | Path) -> Path:
        """Write the page (its folder created); returns its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.html(), encoding="utf-8")
        return path


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
