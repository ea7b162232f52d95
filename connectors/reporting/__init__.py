"""Shared pieces of the HTML reports: one page model, Bokeh embedding, thinning, formatting.

Every report (research, backtest, sweep, arbitrage, live) is one self-contained HTML file: the
Bokeh JavaScript is inlined and each plot is a JSON document in the page, so a file opens
offline and can be mailed. Bokeh is imported only when a page is rendered.
"""
