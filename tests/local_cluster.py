"""Two-process TensorFlow clusters on 127.0.0.1 for the worker tests (mw_worker.py, ft_worker.py)."""

import json
import os
import socket


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def local_cluster(num_workers=2):
    """A ``TF_CONFIG`` cluster of ``num_workers`` workers on fresh local ports."""
    return {"worker": [f"127.0.0.1:{p}" for p in free_ports(num_workers)]}


def worker_env(cluster=None, index=None, **extra):
    """This process's environment for a CPU-only worker: TF_CONFIG names worker ``index`` of
    ``cluster`` (none without a cluster), plus ``extra`` variables."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", **extra)
    if cluster:
        env["TF_CONFIG"] = json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}
        )
    return env
