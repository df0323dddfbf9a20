"""What keeping freed host memory is worth (distmeta/host_memory.py): distmeta's Conv4 meta-step
with it and with glibc's defaults, side by side in one run.

    python benchmarks/host_memory.py [--rounds 3] [--json benchmarks/results/host_memory.json]

Each round times `benchmarks/engine_speed.py`'s child for distmeta's `auto` variant (Omniglot
Conv4 5-way 1-shot, meta-batch 32, the loop's two threads; 10 timed steps after 2 warm-up ones,
each its own process) once with `--distmeta-allocator kept` and once with `default`, alternating,
for second- and first-order MAML. Prints each setting's median over the rounds' medians (each
round's figures are in the JSON) and writes the JSON. About 4 minutes with 3 rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

SETTINGS = ("kept", "default")


def main() -> None:
    from engine_speed import run_variant

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "host_memory.json")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    engine_speed = str(ROOT / "benchmarks" / "engine_speed.py")
    rounds: dict[str, dict[str, list[float]]] = {}
    for order in ("second", "first"):
        rounds[order] = {setting: [] for setting in SETTINGS}
        for _ in range(args.rounds):
            for setting in SETTINGS:
                command = [sys.executable, engine_speed, "--child", "conv4", "auto", "--orders", order]
                result = run_variant(command + ["--distmeta-allocator", setting], "conv4", order, "auto", 1800.0)
                if "failed" in result:
                    raise SystemExit(f"{order} order, {setting}: {result['failed']}")
                rounds[order][setting].append(result["ms_per_step"])
                print(f"  {order:6} {setting:7} {result['ms_per_step']:7.1f} ms/step", flush=True)
    medians = {order: {s: statistics.median(ms) for s, ms in by.items()} for order, by in rounds.items()}
    print(f"\n{'order':7} {'kept':>9} {'default':>9} {'default / kept':>15}")
    for order, by in medians.items():
        print(f"{order:7} {by['kept']:7.1f}ms {by['default']:7.1f}ms {by['default'] / by['kept']:15.2f}")
    command = "python benchmarks/host_memory.py" + "".join(f" {a}" for a in sys.argv[1:])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"command": command, "ms_per_step": rounds, "median_ms": medians}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
