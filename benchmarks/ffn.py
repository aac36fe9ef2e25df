"""The transformer's feed-forward kinds side by side: gelu vs swiglu vs kan at the same ff_mult
(about equal parameter count by construction): parameters and CPU training-step throughput.

Same measurement as benchmarks/model_step.py (A=8, L=64, F=16, B=64; forward + full objective
+ backward + AdamW), eager float32 on CPU, each kind in its own process.

    python benchmarks/ffn.py [--steps 10] [--batch 64] [--family transformer]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_step import ASSETS, FEATURES, LOOKBACK, measure  # noqa: E402

KINDS = ("gelu", "swiglu", "kan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="transformer", help="a family with the ffn option (default transformer)")
    parser.add_argument("--batch", type=int, default=64, help="dates per batch (default 64)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:  # child process: one kind, printed as JSON
        figures = measure(args.family, "cpu", args.batch, args.steps, args.warmup, False, arch={"ffn": args.one})
        print(json.dumps(figures))
        return

    import torch

    print(f"{args.family}, A={ASSETS} L={LOOKBACK} F={FEATURES} B={args.batch}, CPU float32 eager, "
          f"{args.steps} timed steps after {args.warmup} warmup, {torch.get_num_threads()} threads")
    for kind in KINDS:
        command = [sys.executable, __file__, "--one", kind, "--family", args.family, "--batch", str(args.batch),
                   "--steps", str(args.steps), "--warmup", str(args.warmup)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            print(f"{kind:<7} error: {(result.stderr.strip().splitlines() or ['failed'])[-1]}")
            continue
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        print(f"{kind:<7} {figures['parameters']:>8,d} params  {figures['samples_per_s']:8.1f} samples/s"
              f"  {figures['ms_per_step']:7.1f} ms/step  peak {figures['peak_mib']:7.1f} MiB", flush=True)


if __name__ == "__main__":
    main()
