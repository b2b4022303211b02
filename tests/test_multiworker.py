"""Two worker processes on 127.0.0.1 under MultiWorkerMirroredStrategy: Keras 3.15's fit fails out
of the box; our model core fixes it. For every distiller, both workers must end with identical
weights, equal to a single-process run over the same global batches with the same two replicas
(MirroredStrategy on two logical CPUs), and for the BN-free baseline also equal to one device."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest
from local_cluster import local_cluster, worker_env

WORKER = pathlib.Path(__file__).with_name("mw_worker.py")
TIMEOUT = 240


def _weights(path):
    with np.load(path) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


def _run(method, mode, out, cluster=None, index=None):
    return subprocess.Popen(
        [sys.executable, str(WORKER), method, mode, str(out)],
        env=worker_env(cluster, index),
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
    cluster = local_cluster(2)
    procs = [_run(method, "multiworker", tmp_path / f"w{i}.npz", cluster, i) for i in range(2)]
    _finish(procs)
    references = ["mirrored"] + (["single"] if method in ("baseline", "pskd") else [])
    _finish([_run(method, mode, tmp_path / f"{mode}.npz") for mode in references])
    w0, w1 = _weights(tmp_path / "w0.npz"), _weights(tmp_path / "w1.npz")
    for a, b in zip(w0, w1):
        np.testing.assert_array_equal(a, b)
    for mode in references:
        for a, c in zip(w0, _weights(tmp_path / f"{mode}.npz")):
            np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-5, err_msg=mode)
