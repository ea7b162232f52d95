"""Binance and Kraken feeds, the cross-venue spread and the arbitrage job (issue #7)."""
