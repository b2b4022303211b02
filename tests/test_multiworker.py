"""Two worker processes on 127.0.0.1 under MultiWorkerMirroredStrategy: Keras 3.15's fit fails out
of the box; our model core fixes it. For every distiller, both workers must end with identical
weights, equal to a single-process run over the same global batches with the same two replicas
(MirroredStrategy on two logical CPUs), and for the BN-free baseline also equal to one device."""

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


def _run(method, mode, out, tf_config=None):
    return subprocess.Popen(
        [sys.executable, str(WORKER), method, mode, str(out)],
        env=_env(tf_config),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(procs):
    try:
        outputs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
    finally:
        for p in procs:  # always reaped, even on timeout or failure
            if p.poll() is None:
                p.kill()
            p.wait()
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["baseline", "two_view", "multi_exit", "self_guidance", "pskd"])
def test_two_workers_match_each_other_and_single_process(method, tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = [
        _run(
            method,
            "multiworker",
            tmp_path / f"w{i}.npz",
            {"cluster": cluster, "task": {"type": "worker", "index": i}},
        )
        for i in range(2)
    ]
    _finish(procs)
    references = ["mirrored"] + (["single"] if method in ("baseline", "pskd") else [])
    _finish([_run(method, mode, tmp_path / f"{mode}.npz") for mode in references])
    w0, w1 = _weights(tmp_path / "w0.npz"), _weights(tmp_path / "w1.npz")
    for a, b in zip(w0, w1):
        np.testing.assert_array_equal(a, b)
    for mode in references:
        for a, c in zip(w0, _weights(tmp_path / f"{mode}.npz")):
            np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-5, err_msg=mode)
