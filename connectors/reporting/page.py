"""One self-contained HTML page: facts, sections of text, tables and interactive plots.

Why this shape: a report is assembled as plain data (:class:`Page`) by code that knows the
numbers, and rendered here in one place, so every mode gets the same offline guarantees. Each
plot is embedded as ``<script type="application/json" class="tf-plot" data-name=...>`` holding
Bokeh's ``json_item`` document (tests parse it to check the data in each plot), and Bokeh's
JavaScript is inlined once, from the installed package: the page names no external URL. A plot
is a Bokeh model, or a :class:`bokeh_json.JsonPlot` whose document is written without Bokeh.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tickflow.connectors.reporting.bokeh_json import JsonPlot, inline_js

_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em;color:#222;
max-width:1300px}
table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:.25em .6em;font-size:.9em}
th{background:#f4f4f4;text-align:left} td.n{text-align:right;font-variant-numeric:tabular-nums}
.warn{background:#fff4e0;border-left:4px solid #e67e22;padding:.6em}
.note{color:#555;font-size:.9em} .plot{margin:.5em 0 1.5em 0}
nav a{margin-right:1em}"""

_LOADER = """document.querySelectorAll('script.tf-plot').forEach(function (el) {
  Bokeh.embed.embed_item(JSON.parse(el.textContent), el.dataset.target);
});"""


@dataclass
class Section:
    """One ``<h2>`` section: ``parts`` are HTML snippets and Bokeh models, in order."""

    title: str
    parts: list[Any] = field(default_factory=list)
    anchor: str = ""

    def text(self, paragraph: str, css: str = "") -> Section:
        """A paragraph of plain text (escaped)."""
        cls = f" class={css}" if css else ""
        self.parts.append(f"<p{cls}>{html.escape(paragraph)}</p>")
        return self

    def table(self, heads: Sequence[str], rows: Sequence[Sequence[str]]) -> Section:
        self.parts.append(table_html(heads, rows))
        return self

    def plot(self, name: str, model: Any) -> Section:
        """A Bokeh model or a JsonPlot; ``name`` identifies it in the page (``data-name``)."""
        self.parts.append(_Plot(name, model))
        return self


@dataclass
class _Plot:
    name: str
    model: Any


@dataclass
class Page:
    """A whole report: a title, key facts, warnings and sections."""

    title: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)

    def section(self, title: str) -> Section:
        anchor = "s" + "".join(c if c.isalnum() else "-" for c in title.lower())
        sec = Section(title, anchor=anchor)
        self.sections.append(sec)
        return sec

    def render(self) -> str:
        """The page as one HTML document with Bokeh's JavaScript inlined."""
        e = html.escape
        plots = [p for s in self.sections for p in s.parts if isinstance(p, _Plot)]
        body: list[str] = [f"<h1>{e(self.title)}</h1>"]
        if self.facts:
            body.append("<table>" + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>"
                                            for k, v in self.facts) + "</table>")
        body += [f"<p class=warn>{e(w)}</p>" for w in self.warnings]
        if len(self.sections) > 2:
            body.append("<nav>" + "".join(f"<a href='#{s.anchor}'>{e(s.title)}</a>"
                                          for s in self.sections) + "</nav>")
        n = 0
        for sec in self.sections:
            body.append(f"<h2 id='{sec.anchor}'>{e(sec.title)}</h2>")
            for part in sec.parts:
                if isinstance(part, _Plot):
                    n += 1
                    body.append(_plot_html(part, f"tf-plot-{n}"))
                else:
                    body.append(part)
        head = f"<style>\n{_CSS}\n</style>"
        if plots:
            head += _bokeh_js([p.model for p in plots])
            body.append(f"<script>\n{_LOADER}\n</script>")
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{e(self.title)}</title>\n{head}</head><body>\n"
                + "\n".join(body) + "\n</body></html>\n")


def _plot_html(plot: _Plot, target: str) -> str:
    if isinstance(plot.model, JsonPlot):
        doc = plot.model.item(target)
    else:
        from bokeh.embed import json_item

        doc = json_item(plot.model, target)
    item = json.dumps(doc, allow_nan=False, default=_json_default)
    item = item.replace("</", "<\\/")  # a JSON string may not close the script element
    return (f"<div class=plot id='{target}'></div>\n<script type='application/json' "
            f"class='tf-plot' data-target='{target}' data-name='{html.escape(plot.name)}'>"
            f"{item}</script>")


def _json_default(value: Any) -> Any:
    raise TypeError(f"cannot embed {type(value).__name__} in a plot")


def _bokeh_js(models: list[Any]) -> str:
    """Bokeh's JavaScript for ``models``, inlined from the installed package."""
    light = [m for m in models if isinstance(m, JsonPlot)]
    if light and len(light) == len(models):
        return inline_js(widgets=any(m.widgets for m in light))
    if light:
        raise ValueError("a page mixes Bokeh models and JsonPlots; build it one way")
    from bokeh.embed.bundle import bundle_for_objs_and_resources
    from bokeh.resources import INLINE

    bundle = bundle_for_objs_and_resources(models, INLINE)
    if bundle.js_files or bundle.css_files:  # INLINE never links; guard the promise anyway
        raise RuntimeError("Bokeh asked for external resources; the report must be offline")
    scripts = "".join(f"<script>\n{js}\n</script>\n" for js in bundle.js_raw)
    styles = "".join(f"<style>\n{css}\n</style>\n" for css in bundle.css_raw)
    return "\n" + styles + scripts


def table_html(heads: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table; cells after the first column are right-aligned (numbers)."""
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in heads)
    body = "".join("<tr>" + "".join(
        f"<td{' class=n' if j else ''}>{e(c)}</td>" for j, c in enumerate(r)) + "</tr>"
        for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
