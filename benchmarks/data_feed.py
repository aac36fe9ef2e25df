"""Ray Data shard throughput against the in-memory loader, on the same training windows.

    python benchmarks/data_feed.py [--assets 13 --days 4000 --lookback 64 --batch 64 --epochs 10]

Both feed `--epochs` epochs of windows. The Ray Data feed is what a Train worker does: read its
shard's dates once (`get_dataset_shard`), then gather windows from its own features every epoch.
Prints windows/s for each and the ratio (target: the Ray Data feed at least 90% of in-memory).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from quantray.config import DataConfig


def in_memory(windows, batch: int, epochs: int) -> tuple[int, float]:
    start, n = time.perf_counter(), 0
    for _ in range(epochs):
        for lo in range(0, len(windows), batch):
            n += len(windows.batch(np.arange(lo, min(lo + batch, len(windows))))["x"])
    return n, time.perf_counter() - start


def ray_shard(windows, batch: int, epochs: int) -> tuple[int, float, float]:
    """Windows fed, seconds in all, and seconds of the one-time shard read."""
    from quantray.data.windows import ray_dataset, shard_dates

    shard = ray_dataset(windows).materialize().streaming_split(1)[0]  # what get_dataset_shard hands a worker
    start, n = time.perf_counter(), 0
    dates = shard_dates(shard)
    read = time.perf_counter() - start
    for _ in range(epochs):
        for lo in range(0, len(dates), batch):
            n += len(windows.gather(dates[lo:lo + batch])["x"])
    return n, time.perf_counter() - start, read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", type=int, default=13)
    parser.add_argument("--days", type=int, default=4000)
    parser.add_argument("--lookback", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()

    import ray

    from quantray.data.pipeline import prepare

    data = prepare(DataConfig(source=f"synthetic:seed=0,assets={args.assets},days={args.days}", lookback=args.lookback))
    windows = data.windows("train")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="error")
    ray_shard(windows, args.batch, 1)  # warm-up: Ray Data's first execution starts its machinery
    n_mem, t_mem = in_memory(windows, args.batch, args.epochs)
    n_ray, t_ray, t_read = ray_shard(windows, args.batch, args.epochs)
    ray.shutdown()
    mb = windows.batch(np.arange(1))["x"].nbytes / 1e6
    print(f"windows           {len(windows)} per epoch x {args.epochs} epochs "
          f"({args.assets} assets x lookback {args.lookback}, {mb:.2f} MB each)")
    print(f"in-memory loader  {n_mem / t_mem:10.0f} windows/s")
    print(f"Ray Data shard    {n_ray / t_ray:10.0f} windows/s  ({100 * (n_ray / t_ray) / (n_mem / t_mem):.0f}% "
          f"of in-memory, including the one-time shard read of {t_read:.2f} s)")
    steady = n_ray / (t_ray - t_read)
    print(f"  after the read  {steady:10.0f} windows/s  ({100 * steady / (n_mem / t_mem):.0f}% of in-memory: "
          f"each epoch gathers from the worker's own features)")


if __name__ == "__main__":
    main()
