"""Bokeh documents written as JSON directly, for the research page, without importing Bokeh.

Why: importing Bokeh and building its Python models cost about 1 s of CPU per research
report, most of what the report added to a 5M-tick run; the page needs only two kinds of plot
(a labelled heatmap; a histogram with a feature selector), and their JSON is small. Each
builder returns exactly what Bokeh's ``json_item`` gives for the figure that
:mod:`plots` builds from the same data (tested, ids aside), and the page inlines the same
BokehJS files from the installed package. That equality is checked for one Bokeh version,
:data:`VERIFIED_BOKEH`; with any other installed version :func:`available` is false and the
page is built with Bokeh as before.
"""

from __future__ import annotations

import base64
import gzip
import itertools
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

VERIFIED_BOKEH = "3.9.2"
_RDBU11_REVERSED = ["#67001f", "#b2182b", "#d6604d", "#f4a582", "#fddbc7", "#f7f7f7",
                    "#d1e5f0", "#92c5de", "#4393c3", "#2166ac", "#053061"]
_TEX = re.compile(r"\$\$|\\\[|\\\(")  # text Bokeh would hand to MathJax: left to Bokeh
_IDS = itertools.count(90_001)  # unique on a page, apart from ids Bokeh gives (p1000...)


@dataclass(eq=False)
class Obj:
    """One Bokeh model: its type name and its non-default attributes, in Bokeh's order."""

    name: str
    attrs: dict[str, Any] = field(default_factory=dict)


@cache
def _bokeh_dir() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("bokeh")  # finds, does not import
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@cache
def bokeh_version() -> str | None:
    """The installed Bokeh's version, read from its ``.dist-info`` folder name (importing
    Bokeh or ``importlib.metadata`` to ask costs more than the page)."""
    where = _bokeh_dir()
    if where is None:
        return None
    found = sorted(where.parent.glob("bokeh-*.dist-info"))
    return found[0].name[len("bokeh-"):-len(".dist-info")] if len(found) == 1 else None


def available(texts: Sequence[str] = ()) -> bool:
    """Whether pages may be written without Bokeh: the installed Bokeh is the verified one,
    its JavaScript files are there, and no text asks for MathJax."""
    where = _bokeh_dir()
    return (bokeh_version() == VERIFIED_BOKEH and where is not None
            and (where / "server" / "static" / "js" / "bokeh.min.js").is_file()
            and not any(_TEX.search(t) for t in texts))


def inline_js(widgets: bool) -> str:
    """BokehJS inlined as Bokeh's INLINE resources give it (``bokeh.min.js``, plus
    ``bokeh-widgets.min.js`` when a widget is on the page, then the log level)."""
    where = _bokeh_dir()
    assert where is not None
    raw = []
    for name in ["bokeh.min.js", *(["bokeh-widgets.min.js"] if widgets else [])]:
        text = (where / "server" / "static" / "js" / name).read_bytes().decode("utf-8")
        raw.append(f"/* BEGIN {name} */\n{text}\n/* END {name} */")
    raw.append('Bokeh.set_log_level("info");')
    return "\n" + "".join(f"<script>\n{js}\n</script>\n" for js in raw)


@dataclass
class JsonPlot:
    """A plot ready to embed: its root model, and whether it needs BokehJS's widgets."""

    root: Obj
    widgets: bool = False

    def item(self, target: str) -> dict[str, Any]:
        """The ``json_item`` document, ids given in order of first appearance."""
        config = Obj("DocumentConfig", {"notifications": Obj("Notifications")})
        seen: dict[int, str] = {}
        version = bokeh_version()
        doc = {"version": version, "title": "", "config": _encode(config, seen),
               "roots": [_encode(self.root, seen)]}
        return {"target_id": target, "root_id": seen[id(self.root)], "doc": doc,
                "version": version}


class Plain(list):  # type: ignore[type-arg]
    """A list of strings and finite numbers: embedded as it is, not walked item by item."""


def _encode(value: Any, seen: dict[int, str]) -> Any:
    if type(value) is Plain:
        return value
    if isinstance(value, Obj):
        ref = seen.get(id(value))
        if ref is not None:
            return {"id": ref}
        ref = seen[id(value)] = f"p{next(_IDS)}"
        out: dict[str, Any] = {"type": "object", "name": value.name, "id": ref}
        if value.attrs:
            out["attributes"] = {k: _encode(v, seen) for k, v in value.attrs.items()}
        return out
    if isinstance(value, _Map):
        return {"type": "map", "entries": [[k, _encode(v, seen)] for k, v in value.items]}
    if isinstance(value, np.ndarray):
        raw = gzip.compress(np.ascontiguousarray(value, dtype=np.float64).tobytes(), mtime=1,
                            compresslevel=2)  # as Bokeh encodes a float array
        return {"type": "ndarray", "array": {"type": "bytes",
                                             "data": base64.b64encode(raw).decode("ascii")},
                "shape": [len(value)], "dtype": "float64", "order": sys.byteorder}
    if isinstance(value, float) and value != value:
        return {"type": "number", "value": "nan"}
    if isinstance(value, list):
        return [_encode(v, seen) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v, seen) for k, v in value.items()}
    return value


@dataclass
class _Map:
    """A JSON map in Bokeh's form (``{"type": "map", "entries": [...]}``)."""

    items: list[tuple[str, Any]]


def _field(name: str, **extra: Any) -> dict[str, Any]:
    return {"type": "field", "field": name, **extra}


def _value(v: Any) -> dict[str, Any]:
    return {"type": "value", "value": v}


def _source(data: dict[str, Any], name: str | None = None) -> Obj:
    attrs: dict[str, Any] = {"name": name} if name is not None else {}
    attrs |= {"selected": Obj("Selection", {"indices": [], "line_indices": []}),
              "selection_policy": Obj("UnionRenderers"), "data": _Map(list(data.items()))}
    return Obj("ColumnDataSource", attrs)


def _renderer(source: Obj, glyph: str, attrs: dict[str, Any],
              faded: Sequence[str]) -> Obj:
    """A GlyphRenderer with the glyph, and its nonselection (alpha 0.1) and muted (0.2)
    copies, whose ``faded`` alphas Bokeh sets (put in Bokeh's attribute order)."""
    copies = []
    for alpha in (0.1, 0.2):
        copy: dict[str, Any] = {}
        for key, v in attrs.items():
            if not key.endswith("_alpha"):
                copy[key] = v
            prefix = key[:-len("_color")] if key.endswith("_color") else None
            if prefix is not None and f"{prefix}_alpha" in faded:
                copy[f"{prefix}_alpha"] = _value(alpha)
        for name in faded:  # an alpha without its colour (a Rect's hatch) comes last
            copy.setdefault(name, _value(alpha))
        copies.append(Obj(glyph, copy))
    return Obj("GlyphRenderer", {
        "data_source": source,
        "view": Obj("CDSView", {"filter": Obj("AllIndices")}),
        "glyph": Obj(glyph, attrs), "nonselection_glyph": copies[0],
        "muted_glyph": copies[1]})


def _toolbar(tooltips: list[list[str]]) -> Obj:
    overlay = Obj("BoxAnnotation", {
        "syncable": False, "line_color": "black", "line_alpha": 1.0, "line_width": 2,
        "line_dash": [4, 4], "fill_color": "lightgrey", "fill_alpha": 0.5,
        "level": "overlay", "visible": False, "left": float("nan"), "right": float("nan"),
        "top": float("nan"), "bottom": float("nan"), "left_units": "canvas",
        "right_units": "canvas", "top_units": "canvas", "bottom_units": "canvas",
        "handles": Obj("BoxInteractionHandles", {"all": Obj("AreaVisuals", {
            "fill_color": "white", "hover_fill_color": "lightgray"})})})
    return Obj("Toolbar", {"tools": [
        Obj("PanTool"), Obj("WheelZoomTool", {"renderers": "auto"}),
        Obj("BoxZoomTool", {"dimensions": "both", "overlay": overlay}),
        Obj("ResetTool"), Obj("SaveTool"),
        Obj("HoverTool", {"renderers": "auto", "tooltips": tooltips, "sort_by": None})],
        "logo": None})


def _axis(kind: str, label: str | None = None, orientation: float | None = None) -> Obj:
    if kind == "Categorical":
        attrs: dict[str, Any] = {"ticker": Obj("CategoricalTicker"),
                                 "formatter": Obj("CategoricalTickFormatter")}
    else:
        attrs = {"ticker": Obj("BasicTicker", {"mantissas": [1, 2, 5]}),
                 "formatter": Obj("BasicTickFormatter")}
    if label is not None:
        attrs["axis_label"] = label
    if orientation is not None:
        attrs["major_label_orientation"] = orientation
    attrs["major_label_policy"] = Obj("AllLabels")
    return Obj(f"{kind}Axis", attrs)


def _grids(below: Obj, left: Obj) -> list[Obj]:
    return [Obj("Grid", {"axis": below}), Obj("Grid", {"dimension": 1, "axis": left})]


def heatmap(x_labels: Sequence[str], y_labels: Sequence[str], values: np.ndarray, title: str,
            value_label: str, width: int = 800) -> JsonPlot:
    """:func:`plots.heatmap` (symmetric colours, values written in cells when at most 400)."""
    values = np.where(np.isfinite(values), values, np.nan)
    xl, yl = [str(x) for x in x_labels], [str(y) for y in y_labels]
    i, j = np.nonzero(~np.isnan(values))
    vs = values[i, j].tolist()
    data = {"x": Plain(xl[k] for k in j), "y": Plain(yl[k] for k in i), "value": Plain(vs),
            "text": Plain(f"{v:.2f}" for v in vs)}
    bound = float(np.max(np.abs(values[i, j]))) if len(vs) else 1.0
    bound = bound or 1.0
    mapper = Obj("LinearColorMapper", {"palette": _RDBU11_REVERSED, "low": -bound,
                                       "high": bound})
    src = _source(data)
    rect = _renderer(src, "Rect", {
        "x": _field("x"), "y": _field("y"), "width": _value(1), "height": _value(1),
        "line_color": _value("white"), "fill_color": _field("value", transform=mapper)},
        ("line_alpha", "fill_alpha", "hatch_alpha"))
    renderers = [rect]
    if len(xl) * len(yl) <= 400:
        renderers.append(_renderer(src, "Text", {
            "x": _field("x"), "y": _field("y"), "text": _field("text"),
            "text_color": _value("black"), "text_font_size": _value("8pt"),
            "text_align": _value("center"), "text_baseline": _value("middle")},
            ("text_alpha",)))
    left = _axis("Categorical")
    below = _axis("Categorical", orientation=0.9 if len(xl) > 8 else 0.0)
    bar = Obj("ColorBar", {"width": 10, "ticker": Obj("BasicTicker", {"mantissas": [1, 2, 5]}),
                           "major_label_policy": Obj("NoOverlap"), "color_mapper": mapper})
    fig = Obj("Figure", {
        "width": width, "height": max(250, 40 + 28 * len(yl)),
        "x_range": Obj("FactorRange", {"factors": Plain(xl)}),
        "y_range": Obj("FactorRange", {"factors": Plain(reversed(yl))}),
        "x_scale": Obj("CategoricalScale"), "y_scale": Obj("CategoricalScale"),
        "title": Obj("Title", {"text": title}), "renderers": renderers,
        "toolbar": _toolbar([["x", "@x"], ["y", "@y"], [value_label, "@text"]]),
        "left": [left], "right": [bar], "below": [below], "center": _grids(below, left)})
    return JsonPlot(fig)


def histogram_selector(choices: dict[str, dict[str, np.ndarray]], label: str, title_format: str,
                       x_label: str, y_label: str, width: int, height: int,
                       color: str = "#1f6fb4") -> JsonPlot:
    """A Select above a histogram (``left``/``right``/``count`` bins per option) that swaps
    the bins and the title, as :func:`plots.selector` over a :func:`plots.plain_figure`
    with one ``quad``."""
    options = list(choices)
    shown = _source(dict(choices[options[0]]))
    title = Obj("Title", {"text": title_format.format(options[0])})
    sources = _Map([(opt, _Map([("bins", _source(dict(bins), f"choice:{opt}:bins"))]))
                    for opt, bins in choices.items()])
    code = """const picked = sources[cb_obj.value];
for (const key of Object.keys(shown)) {
  shown[key].data = Object.assign({}, picked[key].data);
}
if (fig_title) { fig_title.text = fmt.replace('{}', cb_obj.value); }"""
    callback = Obj("CustomJS", {"args": _Map([
        ("shown", _Map([("bins", shown)])), ("sources", sources), ("fig_title", title),
        ("fmt", title_format)]), "code": code})
    select = Obj("Select", {"js_property_callbacks": _Map([("change:value", [callback])]),
                            "title": label, "options": options, "value": options[0]})
    quad = _renderer(shown, "Quad", {
        "left": _field("left"), "right": _field("right"), "bottom": _value(0),
        "top": _field("count"), "line_color": _value("white"), "line_alpha": _value(0.75),
        "fill_color": _value(color), "fill_alpha": _value(0.75),
        "hatch_color": _value(color), "hatch_alpha": _value(0.75)},
        ("line_alpha", "fill_alpha", "hatch_alpha"))
    left, below = _axis("Linear", y_label), _axis("Linear", x_label)
    fig = Obj("Figure", {
        "width": width, "height": height, "x_range": Obj("DataRange1d"),
        "y_range": Obj("DataRange1d"), "x_scale": Obj("LinearScale"),
        "y_scale": Obj("LinearScale"), "title": title, "renderers": [quad],
        "toolbar": _toolbar([["from", "@left{0,0.0000}"], ["to", "@right{0,0.0000}"],
                             ["count", "@count{0,0}"]]),
        "left": [left], "below": [below], "center": _grids(below, left)})
    return JsonPlot(Obj("Column", {"children": [select, fig]}), widgets=True)
