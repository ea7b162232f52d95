"""A ``yaml.SafeLoader`` with limits, so that a hostile job file fails fast with a located error.

PyYAML expands aliases and recurses once per nesting level, so a 1 kB "billion laughs" file
hangs a job and 100,000 nested brackets end in a ``RecursionError``. This loader bounds the
file size, the nesting depth, the number of aliases and the size of the document with every
alias expanded, and refuses an alias inside its own anchor (a recursive structure). Only
``true``/``false`` are booleans (YAML 1.2): ``on``, ``off``, ``yes`` and ``no`` stay strings, so
``on: timestamp`` is the key ``on``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import yaml

MAX_FILE_BYTES = 1 << 20
"""A job file holds settings, not data: 1 MiB is far above any real one."""
MAX_DEPTH = 64
"""Nesting levels of mappings and lists (a job nests about six)."""
MAX_ALIASES = 1_000
"""``*name`` references in one document."""
MAX_NODES = 100_000
"""Values in the document with every alias expanded (what the walker and pydantic visit)."""

_BOOL_TAG = "tag:yaml.org,2002:bool"


class YamlLimitError(yaml.MarkedYAMLError):
    """The document exceeds one of the limits above; ``problem_mark`` says where."""

    def __init__(self, problem: str, mark: yaml.Mark | None):
        super().__init__(problem=problem, problem_mark=mark)


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader semantics (no Python tags) with bounded aliases, depth and size."""

    # YAML 1.1 reads yes/no/on/off as booleans; keep only the YAML 1.2 spellings
    yaml_implicit_resolvers: ClassVar[dict[str, list[tuple[str, re.Pattern[str]]]]] = {
        first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._alias_count = 0
        self._node_count = 0
        self._open_anchors: set[str] = set()
        self._anchor_sizes: dict[str, int] = {}

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            anchor = event.anchor
            self._alias_count += 1
            if self._alias_count > MAX_ALIASES:
                raise YamlLimitError(f"more than {MAX_ALIASES:,} aliases (*name); a job file "
                                     f"needs far fewer", event.start_mark)
            if anchor in self._open_anchors:
                raise YamlLimitError(f"alias *{anchor} is inside its own anchor &{anchor}: a "
                                     f"recursive structure cannot be a job setting",
                                     event.start_mark)
            node = super().compose_node(parent, index)
            self._count(self._anchor_sizes.get(anchor or "", 1), event.start_mark)
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YamlLimitError(f"nested deeper than {MAX_DEPTH} levels of mappings and "
                                 f"lists", event.start_mark)
        anchor = event.anchor
        before = self._node_count
        if anchor is not None:
            self._open_anchors.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open_anchors.discard(anchor)
        self._count(1, event.start_mark)
        if anchor is not None:
            self._anchor_sizes[anchor] = self._node_count - before
        return node

    def _count(self, nodes: int, mark: yaml.Mark) -> None:
        self._node_count += nodes
        if self._node_count > MAX_NODES:
            why = (" with aliases expanded (an alias bomb?)" if self._alias_count
                   else "; a job file holds far fewer")
            raise YamlLimitError(f"more than {MAX_NODES:,} values{why}", mark)


BoundedLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def load_value(text: str) -> Any:
    """One YAML value (a ``--set`` value or an environment variable), within the limits.

    Raises:
        YamlLimitError: the value is too deep or too large.
        yaml.YAMLError: it is not YAML; callers usually keep the text as a string then.
    """
    loader = BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def line_col(text: str, position: int) -> tuple[int, int]:
    """1-based line and column of a character offset."""
    line = text.count("\n", 0, position) + 1
    return line, position - (text.rfind("\n", 0, position) + 1) + 1


def read_job_text(path: Path) -> tuple[str | None, tuple[int | None, int | None, str]]:
    """The file's text, or None and (line, col, message) saying why it cannot be a job file.

    Raises:
        OSError: the file cannot be read.
    """
    with path.open("rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            f.seek(0, 2)
            size = f.tell()
            head = data[:MAX_FILE_BYTES].decode("utf-8", errors="replace")
            line, col = line_col(head, len(head))
            return None, (line, col, f"the file is larger than {MAX_FILE_BYTES:,} bytes "
                                     f"(found {size:,}); a job file holds settings, not data")
    try:
        return data.decode("utf-8-sig"), (None, None, "")
    except UnicodeDecodeError as exc:
        good = data[:exc.start].decode("utf-8-sig", errors="replace")
        line, col = line_col(good, len(good))
        return None, (line, col, f"the file is not UTF-8 text: byte 0x{data[exc.start]:02x} "
                                 f"cannot be decoded (save it as UTF-8)")
