"""Training beyond one process: MultiWorkerMirroredStrategy with two workers on 127.0.0.1."""

import json
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

WORKER = pathlib.Path(__file__).with_name("multiworker_worker.py")
ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"}


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_reach_the_loss_of_one(tmp_path):
    ports = ",".join(str(p) for p in free_ports(2))
    workers = [subprocess.Popen([sys.executable, str(WORKER), ports, str(i),
                                 str(tmp_path / f"worker{i}.json")],
                                env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for i in range(2)]
    try:
        for w in workers:
            _, err = w.communicate(timeout=300)
            assert w.returncode == 0, err[-3000:]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    single = subprocess.run([sys.executable, str(WORKER), ports, "-1",
                             str(tmp_path / "single.json")], env=ENV, capture_output=True,
                            text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    results = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in range(2)]
    one = json.loads((tmp_path / "single.json").read_text())
    assert [r["replicas"] for r in results] == [2, 2] and one["replicas"] == 1
    for r in results:
        np.testing.assert_allclose(r["loss"], one["loss"], rtol=1e-5)
        np.testing.assert_allclose(r["nll"], one["nll"], rtol=1e-5)
        np.testing.assert_allclose(r["log_prob"], one["log_prob"], rtol=1e-4, atol=1e-4)
    assert one["loss"][-1] < one["loss"][0]
