"""Leave-one-out accuracy of the kernel step-time model on every GPU the database covers.

For one model (default llama-3.1-8b, tp 1) it prints three markdown tables:

1. per operator and axis: each measured point removed and predicted from its
   neighbours with the model's interpolation rule (|predicted / measured - 1|);
2. composed steps (decodes of batch 1/8/32/128 at KV 1k/4k, prefills of
   512/2048/8192 tokens): the step's GEMM m knot and attention grid point are held
   out of every table and the step recomposed, against the full-grid composition;
3. kernel model against roofline step times, and the cost of one step_time call.

    .venv/bin/python benchmarks/kernels_loo.py [--model llama-3.1-8b] [--tp 1]

Needs the `kernels` extra (aiconfigurator-core).
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from kairos.engine.batch_shape import BatchShape
from kairos.hardware import load_gpu
from kairos.models import load_model
from kairos.perf import KernelModel, RooflineModel, covered_gpus
from kairos.perf.kernels.loo import decode_shape, operator_errors, prefill_shape, step_check
from kairos.perf.kernels.model import open_database

DECODES = [(b, kv) for kv in (1024, 4096) for b in (1, 8, 32, 128)]
PREFILLS = [512, 2048, 8192]


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def operator_table(model_name: str, tp: int) -> None:
    print("| GPU | operator, axis | points | median | p90 | max |")
    print("|---|---|---:|---:|---:|---:|")
    for gpu_name in covered_gpus():
        tables = open_database(load_gpu(gpu_name))
        for label, err in operator_errors(load_model(model_name), tables, tp).items():
            print(f"| {gpu_name} | {label} | {len(err)} | {pct(np.median(err))} | "
                  f"{pct(np.percentile(err, 90))} | {pct(err.max())} |")


def step_table(model_name: str, tp: int) -> None:
    shapes = [(f"decode b={b} kv={kv}", decode_shape(b, kv)) for b, kv in DECODES]
    shapes += [(f"prefill {n}", prefill_shape(n)) for n in PREFILLS]
    print("| GPU | " + " | ".join(label for label, _ in shapes) + " | median |")
    print("|---|" + "---:|" * (len(shapes) + 1))
    for gpu_name in covered_gpus():
        gpu = load_gpu(gpu_name)
        tables = open_database(gpu)
        model = load_model(model_name)
        checks = [step_check(model, gpu, tables, shape, label, tp) for label, shape in shapes]
        cells = [f"{c.full_s * 1e3:.2f}→{c.held_out_s * 1e3:.2f} ({pct(c.error)})" for c in checks]
        median = float(np.median([c.error for c in checks]))
        print(f"| {gpu_name} | " + " | ".join(cells) + f" | {pct(median)} |")


def roofline_table(model_name: str, tp: int) -> None:
    shapes = [(f"decode b={b} kv=1024", decode_shape(b, 1024)) for b in (1, 32, 256)]
    shapes.append(("prefill 2048", prefill_shape(2048)))
    print("| GPU | shape | kernels (ms) | roofline (ms) |")
    print("|---|---|---:|---:|")
    for gpu_name in covered_gpus():
        gpu, model = load_gpu(gpu_name), load_model(model_name)
        kernels, roofline = KernelModel(model, gpu, tp), RooflineModel(model, gpu, tp)
        for label, shape in shapes:
            print(f"| {gpu_name} | {label} | {kernels.step_time(shape) * 1e3:.2f} | "
                  f"{roofline.step_time(shape) * 1e3:.2f} |")


def lookup_cost(model_name: str, tp: int) -> None:
    model = KernelModel(load_model(model_name), load_gpu("h100"), tp)
    shapes = [BatchShape(prefill_new=(512,), prefill_ctx=(4096,), num_decodes=n, decode_kv_sum=n * 3000,
                         num_sampled=n + 1) for n in range(1, 257)]
    start = time.perf_counter()
    for shape in shapes * 20:
        model.step_time(shape)
    per_call = (time.perf_counter() - start) / (len(shapes) * 20)
    start = time.perf_counter()
    build = KernelModel(load_model(model_name), load_gpu("h100"), tp)
    print(f"\nh100 mixed-step step_time: {per_call * 1e6:.2f} us per call; "
          f"model build (tables cached): {(time.perf_counter() - start) * 1e3:.0f} ms; "
          f"measurements used: {build.tables.versions}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="llama-3.1-8b")
    parser.add_argument("--tp", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the extrapolation warnings are expected here
    print(f"## Kernel model leave-one-out, {args.model}, tp={args.tp}\n")
    print("### Per operator (each measured point predicted from its neighbours)\n")
    operator_table(args.model, args.tp)
    print("\n### Composed steps: full grid → step's own points held out, ms (error)\n")
    step_table(args.model, args.tp)
    print("\n### Kernel model vs roofline\n")
    roofline_table(args.model, args.tp)
    lookup_cost(args.model, args.tp)


if __name__ == "__main__":
    main()
