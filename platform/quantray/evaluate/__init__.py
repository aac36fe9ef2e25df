"""Honest evaluation: metrics, Sharpe corrected for the search (PSR/DSR/PBO), backtests, reports.

metrics.py      performance statistics and net returns after costs (the objective's convention)
overfitting.py  Probabilistic / Deflated Sharpe Ratio, Probability of Backtest Overfitting (CSCV)
backtest.py     several strategies on one block of dates, and the baselines they are judged against
report.py       one self-contained HTML page plus PNG figures
"""
