"""Training beside other work: wall time of `mlplab train` with a fixed thread count and with `--threads auto`,
alone and next to busy single-threaded processes, as ratios to the 1-thread run alone.

    python benchmarks/threads.py                    # 784-256-10, 1 epoch; alone, then beside 1 busy process
    python benchmarks/threads.py --busy 1,3 --epochs 2
    python benchmarks/threads.py --quick --json out.json   # a smoke run (tiny settings; timings meaningless)

Each run is a fresh `mlplab train` process (its wall time includes start-up). A busy process is a Python loop
that never sleeps. On a shared machine the other processes' load changes the numbers: read them as ratios
measured in one sitting, and rerun before trusting one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def busy_processes(n: int) -> list[subprocess.Popen]:
    """n processes that each keep one core busy until killed."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def timed_train(threads: str, args) -> tuple[float, dict]:
    """Wall seconds of one `mlplab train` process, and its JSON summary."""
    cmd = [sys.executable, "-m", "mlplab", "train", "--hidden", str(args.hidden), "--epochs", str(args.epochs),
           "--batch-size", str(args.batch_size), "--device", "cpu", "--json", "--threads", threads]
    if args.val_size is not None:
        cmd += ["--val-size", str(args.val_size)]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - t, json.loads(p.stdout)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--val-size", type=int, default=None)
    p.add_argument("--threads", default="1,2", help="fixed thread counts to compare with auto (default 1,2)")
    p.add_argument("--busy", default="1", help="numbers of busy processes to run beside (default 1)")
    p.add_argument("--quick", action="store_true", help="a smoke run: a tiny model on 1,000 images, 1 thread and "
                   "auto, alone and beside 1 busy process")
    p.add_argument("--json", metavar="PATH", help="also write the results here")
    args = p.parse_args()
    if args.quick:
        args.hidden, args.epochs, args.batch_size, args.val_size, args.busy = 8, 1, 500, 59_000, "1"
        args.threads = "1"
    fixed = [t for t in args.threads.split(",") if t]
    settings = [*fixed, "auto"]
    rows = []
    for n_busy in [0, *(int(b) for b in args.busy.split(",") if b)]:
        procs = busy_processes(n_busy)
        try:
            time.sleep(0 if n_busy == 0 else 0.5)  # let the load show in /proc/stat before auto looks
            for threads in settings:
                seconds, summary = timed_train(threads, args)
                rows.append({"busy": n_busy, "threads": threads, "used_threads": summary["threads"],
                             "seconds": seconds, "test_accuracy": summary["test_accuracy"]})
        finally:
            for pr in procs:
                pr.kill()
                pr.wait()
    base = next(r["seconds"] for r in rows if r["busy"] == 0 and r["threads"] == fixed[0])
    print(f"{'busy':>5}{'threads':>9}{'used':>6}{'seconds':>9}{'vs ' + fixed[0] + ' alone':>13}")
    for r in rows:
        r["ratio"] = r["seconds"] / base
        print(f"{r['busy']:>5}{r['threads']:>9}{r['used_threads']:>6}{r['seconds']:>9.2f}{r['ratio']:>12.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "baseline": f"{fixed[0]} thread(s) alone"}, f, indent=1)


if __name__ == "__main__":
    main()
