"""Ray Data shard throughput against the in-memory loader, on the same training windows.

    python benchmarks/data_feed.py [--assets 13 --days 4000 --lookback 64 --batch 64]

Prints windows/s for each and the ratio (target: the Ray Data feed at least 90% of in-memory).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from quantray.config import DataConfig


def in_memory(windows, batch: int) -> tuple[int, float]:
    start, n = time.perf_counter(), 0
    for lo in range(0, len(windows), batch):
        out = windows.batch(np.arange(lo, min(lo + batch, len(windows))))
        n += len(out["x"])
    return n, time.perf_counter() - start


def ray_shard(windows, batch: int, *, materialized: bool) -> tuple[int, float]:
    from quantray.data.windows import ray_dataset

    dataset = ray_dataset(windows)
    if materialized:  # what quantray's TorchTrainer launcher feeds its workers
        dataset = dataset.materialize()
    shard = dataset.streaming_split(1)[0]  # what get_dataset_shard hands a worker
    start, n = time.perf_counter(), 0
    for out in shard.iter_batches(batch_size=batch, batch_format="numpy", prefetch_batches=2):
        n += len(out["x"])
    return n, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", type=int, default=13)
    parser.add_argument("--days", type=int, default=4000)
    parser.add_argument("--lookback", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()

    import ray

    from quantray.data.pipeline import prepare

    data = prepare(DataConfig(source=f"synthetic:seed=0,assets={args.assets},days={args.days}", lookback=args.lookback))
    windows = data.windows("train")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="error")
    ray_shard(windows, args.batch, materialized=False)  # warm-up: workers start, features reach the object store
    n_mem, t_mem = in_memory(windows, args.batch)
    n_ray, t_ray = ray_shard(windows, args.batch, materialized=False)
    n_mat, t_mat = ray_shard(windows, args.batch, materialized=True)
    ray.shutdown()
    mb = windows.batch(np.arange(1))["x"].nbytes / 1e6
    print(f"windows           {n_mem}  ({args.assets} assets x lookback {args.lookback}, {mb:.2f} MB each)")
    print(f"in-memory loader  {n_mem / t_mem:10.0f} windows/s")
    print(f"Ray Data shard, streaming     {n_ray / t_ray:10.0f} windows/s  "
          f"({100 * (n_ray / t_ray) / (n_mem / t_mem):.0f}% of in-memory)")
    print(f"Ray Data shard, materialized  {n_mat / t_mat:10.0f} windows/s  "
          f"({100 * (n_mat / t_mat) / (n_mem / t_mem):.0f}% of in-memory; includes materializing)")


if __name__ == "__main__":
    main()
