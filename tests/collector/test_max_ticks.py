"""``collect --max-ticks N`` writes exactly N ticks, though more arrive while it drains."""

from __future__ import annotations

import pyarrow.parquet as pq

from tests.collector.conftest import PRODUCTS
from tickflow.connectors.coinbase_server import CoinbaseExchangeServer, synthetic_frames
from tickflow.engine import cli


def test_max_ticks_is_exact_when_the_feed_has_more(tmp_path, capsys):
    out = tmp_path / "ticks.parquet"
    with CoinbaseExchangeServer(synthetic_frames(PRODUCTS, 12_000)) as server:
        code = cli.main(["collect", "coinbase", "--url", server.url, "--products", *PRODUCTS,
                         "-F", "-o", str(out), "--max-ticks", "5000", "--log-level", "WARNING"])
        sent = len(server.sent_ticks)
    assert code == 0
    assert sent > 5_000, "the feed must outrun the stop for this test to mean something"
    assert pq.ParquetFile(out).metadata.num_rows == 5_000
    assert "5,000 ticks" in capsys.readouterr().out
