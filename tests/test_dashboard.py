"""optuna-dashboard on a storage that `mlplab tune` wrote, opened in a real headless Chromium (Debian's `chromium`).

CI (CI=true; .ci/run installs chromium) fails without the browser; elsewhere the test skips, saying why."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from mlplab import tune

BROWSERS = ("chromium", "chromium-browser")
WAIT_SECONDS = 60  # for the dashboard to answer, and for the browser to render a page


@pytest.fixture
def chromium():
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    why = "no chromium on PATH (apt-get install -y chromium)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must run the dashboard test in a real browser, but there is {why}; .ci/run installs it")
    pytest.skip(f"the dashboard test needs a real browser: {why}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def _wait_for(url: str, proc: subprocess.Popen, log: Path) -> bytes:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"optuna-dashboard exited with {proc.returncode}: {log.read_text()[-2000:]}"
        try:
            return _get(url)
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"optuna-dashboard did not answer at {url} within {WAIT_SECONDS} s: {log.read_text()[-2000:]}")


def _page_text(browser: str, url: str, profile: Path) -> str:
    """The page at `url` as rendered by headless Chromium (its DOM after scripts ran), as plain text."""
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--dump-dom", url]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=WAIT_SECONDS)
    assert p.returncode == 0 and p.stdout, f"chromium failed ({p.returncode}): {p.stderr[-2000:]}"
    html = re.sub(r"<(script|style)\b[^>]*>.*?</\1>", " ", p.stdout, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_dashboard_shows_every_trial_in_a_real_browser(chromium, small_splits, tmp_path):
    url = f"sqlite:///{tmp_path / 'dash.optuna.sqlite3'}"
    spec = {"base": {"hidden": [8], "batch_size": 200, "init": "xavier_uniform"},
            "search": {"lr": {"loguniform": [1e-2, 0.5]}},
            "tune": {"trials": 5, "per_round": 5, "sampler": "random", "pruner": "halving", "max_epochs": 2,
                     "name": "dash"}}
    threads = torch.get_num_threads()
    summary = tune.run(spec, storage=url, splits=small_splits, device="cpu", threads=1)
    assert torch.get_num_threads() == threads
    assert (summary.trials, summary.complete, summary.pruned) == (5, 1, 4)

    port = _free_port()
    script = Path(sys.executable).parent / "optuna-dashboard"
    log = tmp_path / "dashboard.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(script), url, "--host", "127.0.0.1", "--port", str(port)], stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            studies = json.loads(_wait_for(f"{base}/api/studies", proc, log))["study_summaries"]
            study_id = next(s["study_id"] for s in studies if s["study_name"] == "dash")
            text = _page_text(chromium, f"{base}/dashboard/studies/{study_id}/trials", tmp_path / "profile")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert "5 Trials" in text, text[:2000]
    listed = re.findall(r"Trial (\d+) (Complete|Pruned|Fail)", text)
    assert sorted(int(n) for n, _ in listed) == [0, 1, 2, 3, 4], text[:2000]
    assert sorted(state for _, state in listed) == ["Complete"] + ["Pruned"] * 4
