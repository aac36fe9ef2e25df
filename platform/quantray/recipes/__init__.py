"""Recipes: the only code that wires stages together, one function each.

tune (search), ensemble (select -> fuse -> backtest -> register), backtest (a registered model),
quickstart (tune -> ensemble -> promote). Each recipe's options are one dataclass; the command
line (`quantray.cli`) and `quantray submit` are generated from it.
"""
