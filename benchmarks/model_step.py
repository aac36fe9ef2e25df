"""Training-step throughput and peak memory of every model family at its default size.

One step = forward + full objective + backward + AdamW update on a batch of B dates
(A=8 assets, L=64 steps, F=16 features, B=64 by default). Prints samples (dates) per second
and peak memory for each family: on CPU (float32, eager) and, when CUDA is available, on the
GPU in float32 eager, bf16 autocast eager and bf16 autocast torch.compile'd (the docs/performance.md
GPU table). `--device cuda` runs the GPU rows only; `--device cpu --precision bf16` exercises the
same bf16 code on a CPU (a smoke check of the script, not a figure to quote).

CPU memory is the peak resident set size of a fresh process per family (`ru_maxrss`), and its
growth during the steps (activations, gradients, optimizer state); GPU memory is
`torch.cuda.max_memory_allocated`.

    python benchmarks/model_step.py [--steps 10] [--batch 64] [--families gnn,hybrid] [--cpu-only]
    python benchmarks/model_step.py --device cuda        # the GPU table: fp32 / bf16 / bf16 compiled
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

ASSETS, LOOKBACK, FEATURES = 8, 64, 16


def make_batch(batch: int, device: str) -> dict[str, Any]:
    import torch

    generator = torch.Generator().manual_seed(0)
    mask = torch.rand(batch, ASSETS, generator=generator) > 0.1
    tensors = {
        "x": torch.randn(batch, ASSETS, LOOKBACK, FEATURES, generator=generator),
        "asset_ids": torch.arange(ASSETS),
        "mask": mask,
        "next_return": torch.randn(batch, ASSETS, generator=generator) * 0.01,
        "direction": torch.randint(0, 3, (batch, ASSETS), generator=generator),
        "volatility": torch.rand(batch, ASSETS, generator=generator) * 0.02,
        "volume": torch.randn(batch, ASSETS, generator=generator),
        "regime": torch.randint(0, 3, (batch,), generator=generator),
        "label_mask": torch.ones(batch, ASSETS, dtype=torch.bool),
    }
    return {key: value.to(device) for key, value in tensors.items()}


def measure(
    family: str, device: str, batch: int, steps: int, warmup: int, compile_model: bool,
    arch: dict[str, Any] | None = None, precision: str = "fp32",
) -> dict[str, Any]:
    """Time `steps` training steps after `warmup` ones of `family` built with `arch` (default
    sizes when None); returns the figures as a dict."""
    import torch

    from quantray import models
    from quantray.train.losses import LossWeights, objective

    torch.manual_seed(0)
    model = models.build(family, n_assets=ASSETS, n_features=FEATURES, lookback=LOOKBACK, **(arch or {}))
    model = model.to(device).train()
    step_model = torch.compile(model) if compile_model else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = make_batch(batch, device)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16")

    def step() -> None:
        with autocast:
            out = step_model(data["x"], data["asset_ids"], data["mask"])
            loss, _ = objective(out, data, LossWeights(), cost_bps=5.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    for _ in range(warmup):
        step()
    warmup_s = time.perf_counter() - started
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    figures = {
        "family": family,
        "device": device,
        "compiled": compile_model,
        "precision": precision,
        "parameters": sum(p.numel() for p in model.parameters()),
        "samples_per_s": batch * steps / elapsed,
        "ms_per_step": 1e3 * elapsed / steps,
        "warmup_s": warmup_s,
    }
    if device == "cuda":
        figures["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        figures["peak_mib"] = peak / 1024
        figures["step_growth_mib"] = (peak - rss_before) / 1024
    return figures


def measure_in_fresh_process(family: str, device: str, args: argparse.Namespace, compile_model: bool,
                             precision: str) -> dict[str, Any]:
    """Each run in its own process, so peak RSS belongs to one family and compile caches don't leak."""
    command = [
        sys.executable, __file__, "--one", family, "--device", device, "--batch", str(args.batch),
        "--steps", str(args.steps), "--warmup", str(args.warmup), "--precision", precision,
    ] + (["--compile"] if compile_model else [])
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return {"family": family, "device": device, "compiled": compile_model, "precision": precision,
                "error": (result.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def print_row(figures: dict[str, Any]) -> None:
    label = (f"{figures['family']:<12} {figures['device']:<5} {figures['precision']:<5} "
             f"{'compiled' if figures['compiled'] else 'eager':<9}")
    if "error" in figures:
        print(f"{label} error: {figures['error']}")
        return
    growth = f"  step growth {figures['step_growth_mib']:7.1f} MiB" if "step_growth_mib" in figures else ""
    print(
        f"{label} {figures['parameters']:>8,d} params  {figures['samples_per_s']:9.1f} samples/s"
        f"  {figures['ms_per_step']:8.1f} ms/step  peak {figures['peak_mib']:8.1f} MiB{growth}"
        f"  (warmup {figures['warmup_s']:.1f} s)",
        flush=True,
    )


def main() -> None:
    from quantray.models import FAMILIES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated families (default: all)")
    parser.add_argument("--batch", type=int, default=64, help="dates per batch (default 64)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first, compilation included (default 3)")
    parser.add_argument("--cpu-only", action="store_true", help="skip the GPU runs even when CUDA is available")
    parser.add_argument("--compile-cpu", action="store_true", help="also time torch.compile on CPU (needs a C++ compiler)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: CPU rows, and the GPU rows when CUDA is available (default)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="with --device cpu: the precision of the CPU rows (default fp32)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:  # child process: one measurement, printed as JSON
        print(json.dumps(measure(args.one, args.device, args.batch, args.steps, args.warmup, args.compile,
                                 precision=args.precision)))
        return

    import torch

    families = [f.strip() for f in args.families.split(",") if f.strip()]
    cpu_precision = args.precision if args.device == "cpu" else "fp32"
    runs = [("cpu", False, cpu_precision)] + ([("cpu", True, cpu_precision)] if args.compile_cpu else [])
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available() and not args.cpu_only):
        gpu_runs = [("cuda", False, "fp32"), ("cuda", False, "bf16"), ("cuda", True, "bf16")]
        runs = gpu_runs if args.device == "cuda" else runs + gpu_runs
    print(f"A={ASSETS} L={LOOKBACK} F={FEATURES} B={args.batch}, {args.steps} timed steps after {args.warmup} warmup, "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no CUDA"))
    for device, compile_model, precision in runs:
        for family in families:
            print_row(measure_in_fresh_process(family, device, args, compile_model, precision))


if __name__ == "__main__":
    main()
