"""Two worker processes on 127.0.0.1 under MultiWorkerMirroredStrategy: Keras 3.15's fit fails out
of the box; our model core fixes it. Both workers must end with identical weights, equal to a
single-process run over the same global batches."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

WORKER = pathlib.Path(__file__).with_name("mw_worker.py")
TIMEOUT = 240


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _env(tf_config=None):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["CUDA_VISIBLE_DEVICES"] = ""
    if tf_config:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def _weights(path):
    with np.load(path) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["baseline"])
def test_two_workers_match_each_other_and_single_process(method, tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    try:
        for i in range(2):
            cfg = {"cluster": cluster, "task": {"type": "worker", "index": i}}
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(WORKER), method, str(tmp_path / f"w{i}.npz")],
                    env=_env(cfg), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                )
            )
        outputs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
    finally:
        for p in procs:  # always reaped, even on timeout or failure
            if p.poll() is None:
                p.kill()
            p.wait()
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    single = subprocess.run(
        [sys.executable, str(WORKER), method, str(tmp_path / "single.npz")],
        env=_env(), capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert single.returncode == 0, single.stdout[-2000:] + single.stderr[-2000:]
    w0, w1, ws = (_weights(tmp_path / f) for f in ("w0.npz", "w1.npz", "single.npz"))
    for a, b, c in zip(w0, w1, ws):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)
