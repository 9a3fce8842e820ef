"""Speed of the float64 golden models: recurrent vs chunkwise on long sequences.

Run ``python -m deltanet_hw.golden.bench -o reports/golden_speed.json``. Each point is the best of
``--repeats`` warm runs (the first call of a shape also pays for fresh memory pages).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

from ..config import preset
from . import chunk_delta_rule, recurrent_delta_rule
from .layer import sigmoid
from .vectors import random_inputs, rel_rms

TARGET_SPEEDUP = 5.0  # chunkwise vs recurrent at d = 128, T = 4096
TARGET_LONG_SECONDS = 60.0  # chunkwise at T = 65536 "well under a minute"


def _best_time(fn, repeats):
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def measure(d, tokens, heads, chunk_sizes, repeats):
    cfg = preset("small").replace(d_k=d, d_v=d, max_tokens=max(tokens, 64), short_conv=False)
    r = random_inputs(cfg, tokens, heads=heads, seed=0)
    x = dict(q=r["q"], k=r["k"], v=r["v"], beta=sigmoid(r["beta_logits"]))
    common = dict(use_qk_l2norm_in_kernel=True, output_final_state=True)
    rec_s, (o_ref, s_ref) = _best_time(lambda: recurrent_delta_rule(**x, **common), repeats)
    row = {"d": d, "tokens": tokens, "heads": heads, "recurrent_s": rec_s, "chunk": []}
    for c in chunk_sizes:
        t, (o, s) = _best_time(lambda c=c: chunk_delta_rule(**x, **common, chunk_size=c), repeats)
        row["chunk"].append(
            {
                "chunk_size": c,
                "seconds": t,
                "speedup": rec_s / t,
                "rel_rms_o": rel_rms(o, o_ref),
                "rel_rms_state": rel_rms(s, s_ref),
            }
        )
        print(
            f"d={d} T={tokens} H={heads}: recurrent {rec_s:.3f} s, chunk C={c} {t:.3f} s "
            f"({rec_s / t:.2f}x)",
            file=sys.stderr,
            flush=True,
        )
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m deltanet_hw.golden.bench", description=__doc__)
    ap.add_argument("-o", "--output", help="write the JSON record here")
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--tokens", type=int, nargs="+", default=[4096, 65536])
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--chunk-sizes", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    rows = [
        measure(d, t, args.heads, args.chunk_sizes, args.repeats)
        for d in args.dims
        for t in args.tokens
    ]

    def best(d, t):
        row = next((r for r in rows if r["d"] == d and r["tokens"] == t), None)
        return None if row is None else max(row["chunk"], key=lambda c: c["speedup"])

    short, long_ = best(128, 4096), best(128, 65536)
    record = {
        "command": "python -m deltanet_hw.golden.bench " + " ".join(argv or sys.argv[1:]),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "date": time.strftime("%Y-%m-%d"),
        "method": f"best of {args.repeats} runs, float64, random inputs, L2-normalised q/k, "
        "beta = sigmoid(N(0,1)), ungated, zero initial state",
        "results": rows,
        "targets": {
            "chunk_speedup_d128_T4096": {
                "target": f">= {TARGET_SPEEDUP}x",
                "measured": None if short is None else round(short["speedup"], 2),
                "chunk_size": None if short is None else short["chunk_size"],
                "met": None if short is None else short["speedup"] >= TARGET_SPEEDUP,
            },
            "chunk_seconds_d128_T65536": {
                "target": f"< {TARGET_LONG_SECONDS} s",
                "measured": None if long_ is None else round(long_["seconds"], 2),
                "met": None if long_ is None else long_["seconds"] < TARGET_LONG_SECONDS,
            },
        },
    }
    text = json.dumps(record, indent=2)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
