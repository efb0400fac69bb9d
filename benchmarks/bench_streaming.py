"""Streamed against in-memory training on generated Parquet tables: peak resident memory and
throughput, through ``epoch-train --data`` as a user runs it.

    python benchmarks/bench_streaming.py                       # 1M, 10M, 50M rows x 20 float32 columns
    python benchmarks/bench_streaming.py --rows 1M --rounds 3  # one size
    python benchmarks/bench_streaming.py --rows 16M --sides stream              # the memory target alone
    python benchmarks/bench_streaming.py --rows 30M --cgroup-gib 2 --batch 8192  # in a 2 GiB memory cgroup

Each size's file is written once by this script (``--dir``, default a temporary folder; row groups
of pyarrow's default size) with a noisy linear boundary as ``trainer.datasets.make_benchmark``
draws it. Every measurement is one fresh ``python -m trainer.cli`` process training one epoch of
the default mlp at batch 256 on the CPU: ``stream`` with ``streaming=true``, ``memory`` with
``streaming=false`` (the file read whole into pandas). Sides alternate within each round (odd
rounds reverse the order), the figure is the median over rounds, and the ratio stream/memory is
taken within each round. Throughput is training samples per second of the epoch as the run reports
it (training plus the validation pass); "wall" also holds the start, the file reading and the
statistics pass. Peak memory is the process's maximum resident set (``wait4``'s ``ru_maxrss``).
The memory side is skipped where the table would not fit (``--memory-max-rows``).

Exit status 1 when the stream's throughput is below ``--target`` (0.8) times the in-memory one for
a size where both ran, or the 16M-row stream peaks above 1.2 GB (``--no-check`` only reports).
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FEATURES = 20
BATCH = 256
CHUNK = 1 << 20
EPOCH_LINE = re.compile(r"epoch\s+1/1 .* ([0-9.]+)s")


def parse_rows(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def write_table(path: Path, rows: int, seed: int = 0) -> None:
    """``rows`` x 20 float32 features and a binary label, written a chunk at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    w = rng.standard_normal(FEATURES).astype(np.float32)
    names = [f"x{i}" for i in range(FEATURES)]
    tmp = path.with_suffix(".partial")
    with pq.ParquetWriter(tmp, pa.schema([(n, pa.float32()) for n in names] + [("label", pa.int64())])) as writer:
        for lo in range(0, rows, CHUNK):
            n = min(CHUNK, rows - lo)
            x = rng.standard_normal((n, FEATURES), dtype=np.float32)
            y = ((x @ w + 0.3 * rng.standard_normal(n, dtype=np.float32)) > 0).astype(np.int64)
            writer.write_table(pa.table({**{c: x[:, i] for i, c in enumerate(names)}, "label": y}))
    tmp.rename(path)


CGROUP_ROOT = Path("/sys/fs/cgroup/memory")     # cgroup v1's memory controller


def memory_cgroup(gib: float) -> Path:
    """A memory cgroup limited to ``gib`` (needs write access to cgroup v1's memory controller)."""
    group = CGROUP_ROOT / f"bench_streaming_{os.getpid()}"
    group.mkdir()
    (group / "memory.limit_in_bytes").write_text(str(int(gib * 2**30)))
    return group


def run_side(path: Path, side: str, limit_gib: Optional[float], timeout: float, batch: int = BATCH,
             threads: Optional[int] = None, cgroup: Optional[Path] = None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "trainer.cli", "--data", str(path), "--set", f"streaming={str(side == 'stream').lower()}",
           "--set", "target_column=label", "--set", "epochs=1", "--set", f"batch_size={batch}", "--set", "device=cpu",
           "--set", "seed=0"]
    if limit_gib:
        cmd = ["prlimit", f"--as={int(limit_gib * 2**30)}", *cmd]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)      # both sides alike: on a busy machine spinning threads cost most
    started = time.perf_counter()
    join = (lambda: (cgroup / "cgroup.procs").write_text(str(os.getpid()))) if cgroup else None
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=join)
    deadline = started + timeout
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    match = EPOCH_LINE.search(out)
    if code != 0 or match is None or time.perf_counter() > deadline:
        return {"ok": False, "code": code, "tail": out[-1500:], "wall": wall, "peak_mb": usage.ru_maxrss / 1024}
    return {"ok": True, "epoch_s": float(match.group(1)), "wall": wall, "peak_mb": usage.ru_maxrss / 1024}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="1M,10M,50M", help="comma-separated sizes, e.g. 1M,10M")
    ap.add_argument("--sides", default="stream,memory")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", help="where the generated files are kept (reused when present)")
    ap.add_argument("--memory-max-rows", default="20M", help="largest table the memory side reads whole")
    ap.add_argument("--limit-gib", type=float, help="run every side under prlimit --as of this many GiB (address "
                                                     "space: torch's libraries alone map about 1.9 GiB)")
    ap.add_argument("--cgroup-gib", type=float, help="run every side in a memory cgroup of this many GiB (v1)")
    ap.add_argument("--batch", type=int, default=BATCH, help="batch size (the throughput target is for 256)")
    ap.add_argument("--threads", type=int, help="intra-op threads of every side (OMP_NUM_THREADS)")
    ap.add_argument("--target", type=float, default=0.8)
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--no-check", action="store_true")
    args = ap.parse_args(argv)
    folder = Path(args.dir or tempfile.mkdtemp(prefix="bench_streaming_"))
    folder.mkdir(parents=True, exist_ok=True)
    sides = args.sides.split(",")
    cgroup = memory_cgroup(args.cgroup_gib) if args.cgroup_gib else None
    print(f"# bench_streaming: one epoch, mlp [64, 32], batch {args.batch}, CPU, {os.cpu_count()} cores"
          + (f", prlimit --as={args.limit_gib} GiB" if args.limit_gib else "")
          + (f", {args.threads} intra-op thread(s)" if args.threads else "")
          + (f", memory cgroup of {args.cgroup_gib} GiB" if cgroup else ""))
    print("| rows | side | file GiB | epoch s | samples/s | wall s | peak RSS MiB |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    failed = False
    for text in args.rows.split(","):
        rows = parse_rows(text)
        path = folder / f"table_{rows}.parquet"
        if not path.exists():
            write_table(path, rows)
        present = [s for s in sides if s != "memory" or rows <= parse_rows(args.memory_max_rows)]
        runs: dict[str, list[dict[str, Any]]] = {s: [] for s in present}
        for r in range(args.rounds):
            for side in (present if r % 2 == 0 else present[::-1]):
                runs[side].append(run_side(path, side, args.limit_gib, args.timeout, args.batch, args.threads, cgroup))
        n_train = rows - round(rows * 0.2)
        for side, results in runs.items():
            good = [x for x in results if x["ok"]]
            if not good:
                print(f"| {rows:,} | {side} | failed: exit {results[0]['code']}, peak {results[0]['peak_mb']:.0f} MiB | | | | |")
                print("```\n" + results[0]["tail"] + "\n```")
                failed = True
                continue
            epoch = statistics.median(x["epoch_s"] for x in good)
            peak = max(x["peak_mb"] for x in good)
            print(f"| {rows:,} | {side} | {path.stat().st_size / 2**30:.2f} | {epoch:.1f} | {n_train / epoch:,.0f} | "
                  f"{statistics.median(x['wall'] for x in good):.1f} | {peak:,.0f} |")
            if side == "stream" and rows == 16_000_000 and peak > 1200:
                failed = True
        if "stream" in runs and "memory" in runs:
            ratios = [m["epoch_s"] / s["epoch_s"] for s, m in zip(runs["stream"], runs["memory"]) if s["ok"] and m["ok"]]
            if ratios:
                med = statistics.median(ratios)
                print(f"|  | stream/memory throughput | median {med:.2f} (min {min(ratios):.2f}, max {max(ratios):.2f}) "
                      f"over {len(ratios)} rounds; target >= {args.target} | | | | |")
                failed |= med < args.target
    if cgroup is not None:
        cgroup.rmdir()
    return 1 if failed and not args.no_check else 0


if __name__ == "__main__":
    sys.exit(main())
