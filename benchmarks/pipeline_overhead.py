"""Pipeline overhead of `fastqmd generate`: scheduling + storage as a fraction of engine time, and bytes/sample.

Runs the real generation (Dask LocalCluster, journal, consolidation) on a set of structures and compares
    overhead = (workers · wall − Σ engine wall) / Σ engine wall
i.e. the fraction of worker-time not spent inside the reference engine (cluster start, task transfer,
journalling, final merge, idle tails), the steady-state fraction once the fixed costs (cluster start,
structure planning, final merge) are taken out, and the measured client-side time of each stage.
Usage: python benchmarks/pipeline_overhead.py [--case cu32|water] [--n 24] [--workers 2]
Writes benchmarks/pipeline_overhead_<case>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "cu32": {"structures": [{"kind": "rattled_bulk", "element": "Cu", "supercell": 2, "cubic": True,
                             "max_displacement_fraction": 0.03, "seed": 0}],
             "engine": {"kind": "tblite", "method": "GFN1-xTB"}},
    "water": {"structures": [{"kind": "molecule", "name": "H2O", "sampling": "random", "displacement_A": 0.05,
                              "seed": 0}],
              "engine": {"kind": "pyscf-mol", "xc": "PBE", "basis": "def2-SVP"}},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", default="cu32", choices=sorted(CASES))
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    import fastqmd.data.generate as gen
    from fastqmd.data.generate import GenerateConfig, generate

    timings = {"journal_s": 0.0, "consolidate_s": 0.0, "cluster_start_s": 0.0, "plan_s": 0.0}
    orig_journal, orig_consolidate = gen.journal_result, gen.consolidate
    orig_client, orig_plan = gen.make_client, gen.plan_jobs

    def timed(name, fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            r = fn(*a, **k)
            timings[name] += time.perf_counter() - t
            return r

        return wrapper

    gen.journal_result = timed("journal_s", orig_journal)
    gen.consolidate = timed("consolidate_s", orig_consolidate)
    gen.make_client = timed("cluster_start_s", orig_client)
    gen.plan_jobs = timed("plan_s", orig_plan)
    case = json.loads(json.dumps(CASES[args.case]))
    case["structures"][0]["count"] = args.n
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.h5"
        cfg = GenerateConfig.model_validate({**case, "output": str(out), "workers": args.workers})
        t0 = time.perf_counter()
        rep = generate(cfg, progress=False)
        wall = time.perf_counter() - t0
        size = out.stat().st_size
    overhead = (args.workers * wall - rep.engine_time_s) / rep.engine_time_s
    fixed = timings["cluster_start_s"] + timings["plan_s"] + timings["consolidate_s"]
    steady = (args.workers * (wall - fixed) - rep.engine_time_s) / rep.engine_time_s
    result = {
        "command": f"python benchmarks/pipeline_overhead.py --case {args.case} --n {args.n} --workers {args.workers}",
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "case": case,
        "samples": args.n,
        "failed": rep.failed,
        "wall_s": wall,
        "engine_time_sum_s": rep.engine_time_s,
        "engine_time_per_sample_s": rep.engine_time_s / args.n,
        "overhead_fraction_of_engine_time": overhead,
        "steady_state_overhead_fraction": steady,
        "fixed_costs_s": {k: timings[k] for k in ("cluster_start_s", "plan_s", "consolidate_s")},
        "client_journal_s": timings["journal_s"],
        "storage_fraction_of_engine_time": (timings["journal_s"] + timings["consolidate_s"]) / rep.engine_time_s,
        "dataset_bytes": size,
        "dataset_bytes_per_sample": size / args.n,
    }
    path = Path(__file__).with_name(f"pipeline_overhead_{args.case}.json")
    path.write_text(json.dumps(result, indent=1) + "\n")
    json.dump(result, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
