"""Data-layer throughput: features and window indexing for 13 assets x 8,400 days, lookback 64.

Prints seconds (CPU and wall) for the feature build and for gathering every sample's window in
batches, windows per second, and the peak traced memory of those two steps against the size of
the feature array. Targets: features + indexing under 1 s CPU, peak under 3x the feature array.

    .venv/bin/python benchmarks/data_pipeline.py [--assets 13] [--days 8400] [--lookback 64]
        [--features default,amihud,...]   (feature groups; `default` stands for DEFAULT_FEATURES)
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from quantray.config import DEFAULT_FEATURES, FeatureConfig
from quantray.data.features import build_features
from quantray.data.labels import build_labels
from quantray.data.synthetic import simulate
from quantray.data.windows import Windows


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def index_all(windows: Windows, batch_size: int) -> int:
    n = 0
    for start in range(0, len(windows), batch_size):
        n += len(windows.batch(slice(start, start + batch_size))["x"])
    return n


def feature_groups(spec: str) -> tuple[str, ...]:
    """Comma-separated group names; `default` expands to DEFAULT_FEATURES."""
    names: list[str] = []
    for name in spec.split(","):
        for group in DEFAULT_FEATURES if name == "default" else (name,):
            if group not in names:
                names.append(group)
    return tuple(names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=13)
    parser.add_argument("--days", type=int, default=8400)
    parser.add_argument("--lookback", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--features", default="default",
                        help="feature groups, comma-separated ('default': the defaults)")
    args = parser.parse_args()
    cfg = FeatureConfig(names=feature_groups(args.features))

    panel, sim_wall, _ = timed(lambda: simulate(seed=0, assets=args.assets, days=args.days))
    labels = build_labels(panel, 5)
    build_features(panel.head(300), cfg)  # warm imports (pywt, pandas' window code)

    tracemalloc.start()  # the panel and labels, built above, are not counted
    features, feat_wall, feat_cpu = timed(lambda: build_features(panel, cfg))
    feat_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    dates = np.arange(args.lookback - 1, args.days)
    windows = Windows(features.values, labels, features.valid, args.lookback, dates)
    n, idx_wall, idx_cpu = timed(lambda: index_all(windows, args.batch_size))
    idx_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    size = features.values.nbytes
    batch_bytes = args.batch_size * windows.view[0].nbytes
    print(f"panel: {args.assets} assets x {args.days} days (simulated in {sim_wall:.2f} s), "
          f"{len(features.names)} features, lookback {args.lookback}, batch {args.batch_size}")
    print(f"features:        {feat_cpu:.3f} s CPU ({feat_wall:.3f} s wall)")
    print(f"window indexing: {idx_cpu:.3f} s CPU ({idx_wall:.3f} s wall) for {n} samples, "
          f"{n / idx_wall:,.0f} windows/s, {n * windows.view[0].nbytes / idx_wall / 1e9:.2f} GB/s")
    print(f"total:           {feat_cpu + idx_cpu:.3f} s CPU (target < 1 s)")
    print(f"peak memory:     features {feat_peak / 1e6:.1f} MB = {feat_peak / size:.2f}x the feature array "
          f"({size / 1e6:.1f} MB); indexing {idx_peak / 1e6:.1f} MB = {idx_peak / size:.2f}x, of which one "
          f"batch of windows is {batch_bytes / 1e6:.1f} MB (target < 3x)")


if __name__ == "__main__":
    main()
