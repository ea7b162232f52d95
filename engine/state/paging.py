"""Shard paging: hold only one page of keys' state in RAM (``state.page_keys``).

Key ids are cut into pages of ``page_keys`` consecutive ids. Each morsel's rows are grouped by
page; for each page the pipeline gets that page's keys (a page-local key index) and state, read
from the backend, runs its rows, and the page's state goes back to the backend. So the lanes'
arrays never hold more than one page, whatever the number of keys (100,000 symbols and more).

The live pages sit in ``<state root>/pages/<page>-<generation>/`` (one backend directory
each). A page is never modified in place and a directory name is never reused: each save
writes the next generation and then deletes the previous one (TileDB caches what it read under a
URI). So a checkpoint hard-links the live pages and a restart links them back.

Output is identical to an unpaged run: every key's rows still meet the same kernels in the same
order with the same state. Cross-key steps (one state for a group of keys) cannot be
paged and are refused.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tickflow.engine.errors import StateError
from tickflow.engine.keys import KeyIndex
from tickflow.engine.state.backend import (
    StateBackend,
    StateSnapshot,
    layout_from_json,
    layout_to_json,
    read_keys_state,
)
from tickflow.engine.state.lanes import gather, scatter

PAGE_META = "page.json"


class PagedState:
    """Runs a pipeline page by page, its state paged in and out through a backend.

    Args:
        pipeline: the executor's pipeline (its lanes are replaced for each page).
        backend: a persistent state backend.
        directory: where the live pages go.
        page_keys: keys per page.
    """

    def __init__(self, pipeline: Any, backend: StateBackend, directory: Path, page_keys: int):
        cross = [s.step_id for s in pipeline.lanes[0].steps if s.is_cross_key]
        if cross:
            raise StateError(f"state.page_keys cannot page cross-key step(s) "
                             f"{', '.join(cross)}: their state spans keys of several pages")
        self.pipeline = pipeline
        self.backend = backend
        self.dir = Path(directory)
        self.page_keys = page_keys
        self.keys = KeyIndex()  # the job's global key index
        self.max_page_rows = 0  # largest number of keys held in RAM at once (for tests)
        self.live: dict[int, Path] = {}  # page -> its newest generation's directory
        self.generation = 0

    def reset(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.live = {}

    def _scan(self) -> None:
        """Find the live pages on disk (the newest generation of each)."""
        self.live = {}
        for p in sorted(self.dir.iterdir()):
            page, _, gen = p.name.partition("-")
            if page.isdigit() and gen.isdigit() and (p / PAGE_META).is_file():
                self.live[int(page)] = p
                self.generation = max(self.generation, int(gen))

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        pipe = self.pipeline
        if batch.num_rows == 0:
            self._load(0)
            return pipe.process(batch)
        gid = self.keys.encode(batch.column(pipe.job.key))
        pages = gid // self.page_keys
        order = np.argsort(pages, kind="stable")
        sorted_pages = pages[order]
        cuts = np.flatnonzero(np.diff(sorted_pages)) + 1
        parts = []
        for idx in np.split(order, cuts):
            page = int(pages[idx[0]])
            self._load(page)
            parts.append(pipe.process(batch.take(pa.array(idx))))
            self._save(page)
        table = pa.Table.from_batches(parts)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(order.size)
        return table.take(pa.array(inverse)).combine_chunks().to_batches()[0]

    def _page_keys(self, page: int) -> list[Any]:
        lo = page * self.page_keys
        return self.keys.values[lo:lo + self.page_keys]

    def _fresh(self) -> None:
        from tickflow.engine.runtime.pipeline import Lane

        pipe = self.pipeline
        pipe.lanes = [Lane(lane.steps) for lane in pipe.lanes]
        pipe.rule_states = {n: r.new_state() for n, r in pipe.job.signals.items()}

    def _load(self, page: int) -> None:
        """Point the pipeline at one page: its keys (page-local ids) and its saved state."""
        self._fresh()
        keys = self._page_keys(page)
        path = self.live.get(page)
        if path is not None:
            meta = json.loads((path / PAGE_META).read_text())
            stored = self.backend.read(path, layout_from_json(meta["layout"]), meta["rows"])
            n_saved = meta["n_keys"]
            scatter(self.pipeline, StateSnapshot(keys=keys[:n_saved], steps=stored))
        index = KeyIndex()
        index.values = list(keys)
        index.ids = {v: i for i, v in enumerate(keys)}
        self.pipeline.keys = index
        self.max_page_rows = max(self.max_page_rows, len(keys))

    def _save(self, page: int) -> None:
        snapshot = gather(self.pipeline)
        self.generation += 1
        path = self.dir / f"{page:08d}-{self.generation:08d}"
        path.mkdir(parents=True)
        self.backend.write(path, snapshot)
        (path / PAGE_META).write_text(json.dumps({  # written last: marks the page complete
            "n_keys": snapshot.n_keys, "rows": snapshot.rows(),
            "layout": layout_to_json(snapshot.layout())}))
        old = self.live.get(page)
        self.live[page] = path
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    # ----------------------------------------------------------------- checkpoints

    def link_into(self, target: Path) -> None:
        """Hard-link every live page into a checkpoint directory (pages are never rewritten)."""
        for page in self.live.values():
            _link_tree(page, target / "pages" / page.name)

    def restore_from(self, checkpoint: Path, keys: list[Any]) -> None:
        """Make a checkpoint's pages the live ones and load its global key index."""
        self.reset()
        src = checkpoint / "pages"
        if src.is_dir():
            _link_tree(src, self.dir)
        self._scan()
        self.keys = KeyIndex()
        self.keys.values = list(keys)
        self.keys.ids = {v: i for i, v in enumerate(keys)}


def _link_tree(src: Path, dest: Path) -> None:
    """Copy a directory tree as hard links (empty directories too: TileDB needs them)."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.rglob("*")):
        target = dest / f.relative_to(src)
        if f.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(f, target)


def paged_dir(checkpoint: Path, page: int) -> Path | None:
    """A paged checkpoint's directory for one page (None when the page was never saved)."""
    found = sorted((checkpoint / "pages").glob(f"{page:08d}-*"))
    return found[-1] if found else None


def read_paged_key(backend: StateBackend, checkpoint: Path, page_keys: int,
                   key_id: int) -> dict[str, dict[str, np.ndarray]]:
    """One key's state from a paged checkpoint (``run-job state --key``)."""
    path = paged_dir(checkpoint, key_id // page_keys)
    meta_file = path / PAGE_META if path is not None else None
    if meta_file is None or not meta_file.is_file():
        raise StateError(f"checkpoint {checkpoint.name}: key id {key_id} has no saved page")
    meta = json.loads(meta_file.read_text())
    return read_keys_state(backend, path, layout_from_json(meta["layout"]), meta["rows"],
                           meta["n_keys"], np.array([key_id % page_keys]))
