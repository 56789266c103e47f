"""Write a report: one self-contained HTML page (charts inlined as data: URIs, no network),
a Markdown twin with the same tables, and the charts as PNG files beside them."""

from __future__ import annotations

import base64
import datetime
import html
from dataclasses import dataclass
from pathlib import Path

from reports import charts as charts_
from reports import tables
from reports.results import RunData
from reports.tables import Table

CSS = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f2f2f2; }
td:first-child, th:first-child { text-align: left; }
.warn { background: #fff4e5; border-left: 4px solid #f0a030; padding: 0.5em 1em; }
.note { color: #555; font-size: 13px; }
img { max-width: 100%; border: 1px solid #eee; }
"""


@dataclass
class Document:
    title: str
    intro: list[str]
    warnings: list[str]
    tables: list[Table]
    charts: list[charts_.Chart]


def markdown_table(table: Table) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [f"## {table.title}", ""]
    lines.append("| " + " | ".join(map(cell, table.headers)) + " |")
    lines.append("|" + "|".join("---" for _ in table.headers) + "|")
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in table.rows]
    if table.note:
        lines += ["", f"_{table.note}_"]
    return "\n".join(lines) + "\n"


def html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table.rows
    )
    note = f'<p class="note">{html.escape(table.note)}</p>' if table.note else ""
    return (
        f"<h2>{html.escape(table.title)}</h2><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>{note}"
    )


def to_markdown(doc: Document) -> str:
    parts = [f"# {doc.title}", "", *doc.intro, ""]
    if doc.warnings:
        parts += ["## Warnings", "", *(f"- {w}" for w in doc.warnings), ""]
    else:
        parts += ["No warnings: every check on these figures passed.", ""]
    parts += [markdown_table(t) for t in doc.tables]
    if doc.charts:
        parts += ["## Charts", ""]
        parts += [f"![{c.title}]({c.name}.png)\n" for c in doc.charts]
    return "\n".join(parts)


def to_html(doc: Document) -> str:
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{html.escape(doc.title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(doc.title)}</h1>",
        *(f"<p>{html.escape(line)}</p>" for line in doc.intro),
    ]
    if doc.warnings:
        items = "".join(f"<li>{html.escape(w)}</li>" for w in doc.warnings)
        parts.append(f'<div class="warn"><h2>Warnings</h2><ul>{items}</ul></div>')
    else:
        parts.append("<p>No warnings: every check on these figures passed.</p>")
    parts += [html_table(t) for t in doc.tables]
    for chart in doc.charts:
        data = base64.b64encode(chart.png).decode()
        parts.append(
            f"<h2>{html.escape(chart.title)}</h2>"
            f'<img alt="{html.escape(chart.title)}" src="data:image/png;base64,{data}">'
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def write(doc: Document, out: Path, stem: str = "report") -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for chart in doc.charts:
        path = out / f"{chart.name}.png"
        path.write_bytes(chart.png)
        written.append(path)
    for suffix, text in ((".md", to_markdown(doc)), (".html", to_html(doc))):
        path = out / f"{stem}{suffix}"
        path.write_text(text)
        written.append(path)
    return written


def report(runs: list[RunData], out: Path) -> list[Path]:
    """The comparison report of one or more runs."""
    names = ", ".join(run.name for run in runs)
    scenarios = sorted({str(run.summary.get("scenario")) for run in runs})
    intro = [
        f"Runs: {names}. Scenario: {', '.join(scenarios)}.",
        f"Written {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} by rtbench from the "
        "results files only.",
    ]
    report_tables = [tables.headline(runs)]
    scaling = tables.scaling(runs)
    if scaling is not None:
        report_tables.append(scaling)
    report_tables.append(tables.percentiles(runs))
    storm_table = tables.storms(runs)
    if storm_table is not None:
        report_tables.append(storm_table)
    report_tables += [tables.health(runs), tables.environment(runs)]
    doc = Document(
        title="rtbench report: WebSocket vs Server-Sent Events",
        intro=intro,
        warnings=tables.warnings(runs),
        tables=report_tables,
        charts=charts_.render_all(runs),
    )
    return write(doc, out)
