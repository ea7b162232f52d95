"""Reading the HTML reports back: sections, embedded Bokeh plots and their data, URLs.

Why a parser rather than string checks: the tests assert what each plot actually carries
(the columns of its data sources), decoded from Bokeh's JSON as a browser would.
"""

from __future__ import annotations

import base64
import gzip
import html as html_lib
import json
import re
from typing import Any

import numpy as np

_PLOT = re.compile(r"<script type='application/json' class='tf-plot' data-target='([^']+)' "
                   r"data-name='([^']+)'>(.*?)</script>", re.S)
_H2 = re.compile(r"<h2 id='[^']*'>(.*?)</h2>")
_EXTERNAL = re.compile(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*['\"]?"
                       r"(?:https?:)?//", re.I)


def sections(page: str) -> list[str]:
    return [html_lib.unescape(t) for t in _H2.findall(page)]


def plots(page: str) -> dict[str, dict[str, Any]]:
    """Each embedded plot's ``json_item`` document by its name; also checks each has a div."""
    out = {}
    for target, name, text in _PLOT.findall(page):
        assert f"<div class=plot id='{target}'>" in page, target
        out[name] = json.loads(text)
    return out


def external_references(page: str) -> list[str]:
    """Tags that would load something from the network (script/link/img/iframe src/href)."""
    return [m.group(0) for m in _EXTERNAL.finditer(page)]


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        kind = value.get("type")
        if kind == "ndarray":
            arr = value["array"]
            if isinstance(arr, dict) and arr.get("type") == "bytes":
                raw = base64.b64decode(arr["data"])
                if raw[:2] == b"\x1f\x8b":  # Bokeh gzips large buffers
                    raw = gzip.decompress(raw)
                return np.frombuffer(raw, dtype=value["dtype"]).reshape(value["shape"])
            return np.asarray(_decode(arr))
        if kind == "number":
            return float(value["value"])
        if kind == "map":
            return {_decode(k): _decode(v) for k, v in value.get("entries", [])}
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def sources(item: dict[str, Any]) -> list[dict[str, Any]]:
    """The data of every ColumnDataSource in a plot, as {"name": ..., "data": {col: array}}."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and node.get("name") == "ColumnDataSource":
                attrs = node.get("attributes", {})
                data = _decode(attrs.get("data", {}))
                found.append({"name": attrs.get("name"), "data": data})
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(item["doc"])
    return found


def source_named(item: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [s["data"] for s in sources(item) if s["name"] == name]
    assert matches, f"no data source named {name!r} in {[s['name'] for s in sources(item)]}"
    return matches[0]
