"""Time the heads' linear probe (smartmtl.probe.fit_linear) on the frozen backbone's features of
the SST training rows, at several row counts: with the fit's one BLAS thread, and with the
process's default threads as the baseline in the same run. The 5-class cross-validated fit is
the probe's costliest. The rows are a seeded sample of the raw SST training file (so any count up
to 8,544 can be asked for, whatever the prepared data holds); their features are computed once, by
the model a run starts from.

It prints, per row count, both times, their ratio and the fitted weights' absolute sum (smaller:
a stronger L2 penalty chosen). Numbers, not asserts.

    python bench/probe_fit.py --params params.yaml --raw-dir ../shared/data --rows 400 800 1024
"""

from __future__ import annotations

import argparse
import contextlib
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--raw-dir", default="", help="The CS224N data folder (default: params' data.raw_dir).")
    parser.add_argument("--rows", type=int, nargs="+", default=[400, 800, 1024])
    args = parser.parse_args()

    from pathlib import Path

    import numpy as np
    import threadpoolctl

    from smartmtl.config import load_params
    from smartmtl.data.raw import RAW_FILES, read_raw
    from smartmtl.model.backbone import load_tokenizer
    from smartmtl.model.features import tokenize
    from smartmtl.model.heads import build_model
    from smartmtl.train import probe
    from smartmtl.train.hardware import resolve_compute
    from smartmtl.variants import table2_spec

    params = load_params(args.params)
    spec = table2_spec(params, "concat_smart_star", params.sweep.seeds[0])
    frame, _ = read_raw(Path(args.raw_dir or params.data.raw_dir), RAW_FILES["sst", "train"])
    frame = frame.sample(n=min(max(args.rows), len(frame)), random_state=0)  # the file's order is not random
    sst = tokenize(frame, "sst", spec.head, load_tokenizer(params.model.backbone), params.model.max_length)
    rows = np.arange(len(sst))
    compute = resolve_compute(params.train.precision, params.train.device)
    model = build_model(spec, params).to(compute.device)
    inputs = probe.head_inputs(model, "sst", sst, rows, params.train.eval_batch_size, compute.device, compute.autocast)
    labels = sst.labels[rows].numpy()
    print(f"BLAS pools: {[(p['internal_api'], p['num_threads']) for p in threadpoolctl.threadpool_info()]}")
    print("rows  one thread (s)  default threads (s)  ratio  sum |weight|")
    for n in args.rows:
        n = min(n, len(rows))
        started = time.perf_counter()
        weight, _ = probe.fit_linear("sst", inputs[:n], labels[:n])
        one = time.perf_counter() - started
        limit = probe.threadpool_limits
        probe.threadpool_limits = lambda **_: contextlib.nullcontext()  # the baseline: no limit
        try:
            started = time.perf_counter()
            probe.fit_linear("sst", inputs[:n], labels[:n])
            default = time.perf_counter() - started
        finally:
            probe.threadpool_limits = limit
        print(f"{n:4d}  {one:14.1f}  {default:19.1f}  {default / one:5.1f}  {np.abs(weight).sum():12.3g}")


if __name__ == "__main__":
    main()
