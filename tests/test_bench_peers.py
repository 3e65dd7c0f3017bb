"""benchmarks/peers.py still runs (a smoke run on a tenth of the data; its timings are not checked)."""

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def test_peers_benchmark_smoke(tmp_path):
    out = tmp_path / "peers.json"
    p = subprocess.run([sys.executable, str(BENCH / "peers.py"), "--quick", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    data = json.loads(out.read_text())
    one = data["one_model"]
    assert one["mlplab_wall"] >= one["mlplab_train"] > 0 and one["tutorial_with_eval"] > 0
    assert 0.2 < one["repeats"][0]["mlplab_test_accuracy"] <= 1  # 39 steps from a 0.01-scale init
    assert [(r["M"], r["H"]) for r in data["populations"]] == [(8, 8)]
    assert all(r["mlplab_s"] > 0 and r["torchfunc_s"] > 0 for r in data["populations"])
    assert "torch.func" in p.stdout and "tutorial loop" in p.stdout
