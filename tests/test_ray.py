"""executor="ray": a sweep's chunks as Ray tasks on a local multi-node cluster (loopback only).

One cluster for the module: a head that runs nothing (num_cpus=0) and two one-CPU worker nodes, its
health checks tightened so that a lost node is noticed in about two seconds instead of Ray's default
15-55 s. Every result is compared with the same configs trained locally with the same chunk size."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import jaxfit
from jaxfit import datasets

# Loopback only: Ray resolves 127.0.0.1 to the machine's outward address unless told it is not a cluster
# of several machines (read when Ray is imported; only `ray start --address` looks at it otherwise).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

CFGS = jaxfit.grid(hidden=[(4,), (8, 8)], activation=["relu", "tanh"], lr=[0.1, 0.01], seed=[0, 1], epochs=5,
                   dtype="float64")
LOOPBACK = "127.0.0.1"


@pytest.fixture(scope="module")
def cluster():
    import shutil
    import tempfile

    tmp = tempfile.mkdtemp(prefix="jr", dir="/tmp")  # short: Ray's socket paths under it are limited to 107 bytes
    os.makedirs(os.path.join(tmp, "ray"), exist_ok=True)  # Ray expects <RAY_TMPDIR>/ray to exist
    old = {k: os.environ.get(k) for k in ("RAY_TMPDIR", "RAY_USAGE_STATS_ENABLED")}
    os.environ.update(RAY_TMPDIR=tmp, RAY_USAGE_STATS_ENABLED="0")
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "node_ip_address": LOOPBACK,
        "_system_config": {"health_check_period_ms": 500, "health_check_timeout_ms": 500,
                           "health_check_failure_threshold": 3, "health_check_initial_delay_ms": 0}})
    nodes = [c.add_node(num_cpus=1, node_ip_address=LOOPBACK) for _ in range(2)]
    address = c.address
    assert address.startswith(LOOPBACK + ":"), address
    ray.init(address=address, log_to_driver=False)
    try:
        yield c, nodes, address
    finally:
        ray.shutdown()
        c.shutdown()
        _kill_processes_naming(tmp)  # anything of this cluster left behind
        shutil.rmtree(tmp, ignore_errors=True)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def data():
    return datasets.sum_mod(n=300, seed=0)


@pytest.fixture(scope="module")
def local(data):
    return jaxfit.sweep(data, CFGS, chunk_size=4)


def _same(a, b):
    assert a.configs == b.configs
    for m in a.curves:
        np.testing.assert_allclose(a.curves[m], b.curves[m], rtol=0, atol=1e-12, err_msg=m)
    for i in range(len(a)):
        for x, y in zip(jax_leaves(a.params(i)), jax_leaves(b.params(i))):
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-12)


def jax_leaves(tree):
    import jax

    return jax.tree_util.tree_leaves(tree)


def test_a_sweep_across_two_worker_nodes_equals_the_local_run(cluster, data, local, tmp_path):
    r = jaxfit.sweep(data, CFGS, executor="ray", chunk_size=4, checkpoint_dir=str(tmp_path / "ck"))
    _same(r, local)
    ex = r.meta["executor"]
    assert ex["workers"] == 2 and len(ex["chunks"]) == 4 and len({c["pid"] for c in ex["chunks"]}) == 2
    # Each worker compiled the bucket once; its later chunks reused the program in its process.
    assert sorted(c["source"] for c in ex["chunks"]).count("process") >= 2
    # The driver wrote every chunk: the same sweep again loads them all, no task runs.
    again = jaxfit.sweep(data, CFGS, executor="ray", chunk_size=4, checkpoint_dir=str(tmp_path / "ck"))
    assert again.meta["executor"]["chunks"] == [] and sum(p["resumed"] for p in again.meta["plans"]) == 4
    _same(again, local)


def _chunk_pids() -> list[int]:
    """Processes of this machine running a chunk task (Ray titles a worker after its task)."""
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"ray::_chunk_task" in f.read():
                        out.append(int(pid))
            except OSError:
                pass
    return out


def _kill_first_chunk_worker(killed: list, stop: threading.Event):
    while not stop.is_set() and not killed:
        pids = _chunk_pids()
        if pids:
            time.sleep(0.3)  # mid-chunk
            os.kill(pids[0], signal.SIGKILL)
            killed.append((pids[0], time.perf_counter()))
        time.sleep(0.05)


def test_a_worker_killed_mid_chunk_is_retried_and_the_table_is_the_same(cluster, data, tmp_path):
    cfgs = [c.replace(epochs=60) for c in CFGS]
    local = jaxfit.sweep(data, cfgs, chunk_size=4)
    killed, stop = [], threading.Event()
    watcher = threading.Thread(target=_kill_first_chunk_worker, args=(killed, stop), daemon=True)
    watcher.start()
    try:
        r = jaxfit.sweep(data, cfgs, executor="ray", chunk_size=4)
    finally:
        stop.set()
        watcher.join(5)
    assert killed, "no chunk task was seen running"
    assert killed[0][0] not in {c["pid"] for c in r.meta["executor"]["chunks"]}  # its chunk ran again elsewhere
    _same(r, local)


def test_a_node_lost_mid_sweep_costs_only_its_chunks(cluster, data):
    c, nodes, _ = cluster
    cfgs = [x.replace(epochs=60) for x in CFGS]
    local = jaxfit.sweep(data, cfgs, chunk_size=2)
    result = {}

    def run():
        result["r"] = jaxfit.sweep(data, cfgs, executor="ray", chunk_size=2)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.time() + 60
    while not _chunk_pids() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    c.remove_node(nodes[1], allow_graceful=False)
    t.join(120)
    assert not t.is_alive(), "the sweep did not finish after a node was lost"
    nodes[1] = c.add_node(num_cpus=1, node_ip_address=LOOPBACK)  # back to two workers for the others
    _same(result["r"], local)


DRIVER = """
import sys, ray, jaxfit
ray.init(address=sys.argv[1], log_to_driver=False)
cfgs = [c.replace(epochs=60) for c in jaxfit.grid(hidden=[(4,), (8, 8)], activation=["relu", "tanh"], lr=[0.1, 0.01],
                                                 seed=[0, 1], epochs=5, dtype="float64")]
jaxfit.sweep(jaxfit.datasets.sum_mod(n=300, seed=0), cfgs, executor="ray", chunk_size=2, checkpoint_dir=sys.argv[2])
"""


def test_the_driver_killed_mid_sweep_resumes_from_the_chunks_written(cluster, data, tmp_path):
    _, _, address = cluster
    ck = tmp_path / "ck"
    p = subprocess.Popen([sys.executable, "-c", DRIVER, address, str(ck)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and p.poll() is None and len(list(ck.glob("chunk-*.npz"))) < 2:
            time.sleep(0.05)
        assert p.poll() is None, p.stderr.read().decode()[-2000:]
        p.kill()
    finally:
        p.kill()
        p.wait(30)
    written = len(list(ck.glob("chunk-*.npz")))
    assert 2 <= written < 8
    cfgs = [x.replace(epochs=60) for x in CFGS]
    r = jaxfit.sweep(data, cfgs, executor="ray", chunk_size=2, checkpoint_dir=str(ck))
    assert sum(p["resumed"] for p in r.meta["plans"]) >= written - 1  # a chunk mid-write is set aside
    assert len(r.meta["executor"]["chunks"]) <= 8 - written + 1
    _same(r, jaxfit.sweep(data, cfgs, chunk_size=2))


def test_what_ray_cannot_do_yet_and_bad_executors_fail_before_any_task(cluster, data):
    with pytest.raises(jaxfit.UserError, match="executor='rya' is invalid: allowed values are local, ray"):
        jaxfit.sweep(data, CFGS, executor="rya")
    with pytest.raises(jaxfit.UserError, match="executor='ray' cannot be combined with on_chunk"):
        jaxfit.sweep(data, CFGS, executor="ray", on_chunk=print)


def test_successive_halving_on_the_cluster_decides_as_locally_and_resumes(cluster, data, tmp_path):
    cfgs = [c.replace(epochs=9) for c in CFGS]
    halving = jaxfit.Halving(min_epochs=1, eta=3)
    local = jaxfit.sweep(data, cfgs, chunk_size=4, prune=halving)
    r = jaxfit.sweep(data, cfgs, chunk_size=4, prune=halving, executor="ray", checkpoint_dir=str(tmp_path / "ck"))
    assert r.meta["prune"]["rungs"] == local.meta["prune"]["rungs"]
    assert list(r.stopped_epoch) == list(local.stopped_epoch) and r.table["pruned"].any()
    for m in r.curves:
        np.testing.assert_allclose(r.curves[m], local.curves[m], rtol=0, atol=1e-10, err_msg=m)
    spans = r.meta["executor"]["spans"]
    assert len({s["pid"] for s in spans}) == 2 and {tuple(s["epochs"]) for s in spans} >= {(0, 1), (1, 3), (3, 9)}
    again = jaxfit.sweep(data, cfgs, chunk_size=4, prune=halving, executor="ray", checkpoint_dir=str(tmp_path / "ck"))
    assert again.meta["executor"]["spans"] == []  # every span was written by the driver and is loaded
    np.testing.assert_array_equal(again.curves["val_loss"], r.curves["val_loss"])


def test_the_command_line_trains_a_spec_on_the_cluster_and_resumes(cluster, tmp_path, capsys):
    from jaxfit.cli import main

    _, _, address = cluster
    spec = tmp_path / "s.toml"
    spec.write_text('[[data]]\nname = "sum_bin"\nn = 200\n\n[grid]\nhidden = [[4], [8]]\nlr = [0.1, 0.01]\n'
                    'seed = [0, 1]\nepochs = 3\ndtype = "float64"\n')
    args = ["sweep", str(spec), "--out", str(tmp_path / "o"), "--no-progress", "--no-cache", "--ray", address]
    assert main(args) == 0
    r = jaxfit.SweepResult.load(tmp_path / "o" / "sum_bin")
    assert r.meta["executor"]["workers"] == 2 and len(r.meta["executor"]["chunks"]) >= 2
    assert main(args) == 0  # the same command: every chunk loaded from the sweep directory
    again = jaxfit.SweepResult.load(tmp_path / "o" / "sum_bin")
    assert again.meta["executor"]["chunks"] == []
    np.testing.assert_array_equal(again.curves["val_loss"], r.curves["val_loss"])
    local = jaxfit.sweep(datasets.sum_bin(n=200), r.configs, chunk_size=r.meta["plans"][0]["chunk_size"])
    np.testing.assert_allclose(local.curves["val_loss"], r.curves["val_loss"], rtol=0, atol=1e-12)
    capsys.readouterr()


def _kill_processes_naming(text: str) -> None:
    """SIGKILL every process whose command line names `text` (a cluster's own temp dir): `ray stop`
    would stop every Ray on the machine, other users' included."""
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


@pytest.mark.slow
def test_a_real_ray_start_head_and_a_driver_that_connects_by_address():
    """`ray start --head` as a user runs it (a second `ray start --address` node cannot join over
    loopback on one machine, see the README), a driver process connecting through $RAY_ADDRESS."""
    import shutil
    import tempfile

    tmp = tempfile.mkdtemp(prefix="jr", dir="/tmp")  # a short path: Ray's sockets live under it (107 bytes)
    env = {**os.environ, "RAY_TMPDIR": tmp, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    os.makedirs(os.path.join(tmp, "ray"), exist_ok=True)
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    port = 6390 + os.getpid() % 100
    start = subprocess.run([ray_bin, "start", "--head", "--num-cpus", "2", "--node-ip-address", LOOPBACK,
                            "--port", str(port), "--include-dashboard", "false", "--temp-dir", os.path.join(tmp, "ray")],
                           env=env, capture_output=True, text=True, timeout=120)
    try:
        assert start.returncode == 0, start.stderr[-2000:]
        script = ("import jaxfit, numpy as np\n"
                  "d = jaxfit.datasets.sum_mod(n=200, seed=0)\n"
                  "c = jaxfit.grid(hidden=[(4,), (8,)], lr=[0.1, 0.01], epochs=3, dtype='float64')\n"
                  "r = jaxfit.sweep(d, c, executor='ray', chunk_size=2)\n"
                  "l = jaxfit.sweep(d, c, chunk_size=2)\n"
                  "print(r.meta['executor']['workers'], np.abs(r.curves['val_loss'] - l.curves['val_loss']).max())\n")
        run = subprocess.run([sys.executable, "-c", script], env={**env, "RAY_ADDRESS": f"{LOOPBACK}:{port}"},
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        workers, diff = run.stdout.split()[-2:]
        assert workers == "2" and float(diff) <= 1e-12
    finally:
        _kill_processes_naming(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def test_an_error_raised_by_a_task_is_not_retried_and_comes_back_as_itself(cluster, tmp_path):
    """The options every chunk task gets (engine.remote._options): system failures retried, the
    task's own exceptions not (a bug fails fast with its own type and message)."""
    from jaxfit.engine import remote

    def fails_once_recorded(path):  # defined here: Ray ships it by value (the tests are not importable there)
        with open(path, "a") as f:
            f.write("attempt\n")
        raise ValueError("a shape bug in the training")

    _, opts, *_ = remote._options(None)
    path = tmp_path / "attempts"
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="a shape bug in the training"):
        remote._result(ray, ray.remote(fails_once_recorded).options(**opts).remote(str(path)))
    assert path.read_text().count("attempt") == 1 and time.perf_counter() - t0 < 60


def test_an_address_nobody_answers_at_is_one_line_before_anything_is_written(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind((LOOPBACK, 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "jaxfit.cli", "sweep", "--quick", "--no-progress", "--out",
                          str(tmp_path / "o"), "--ray", f"{LOOPBACK}:{port}"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and time.perf_counter() - t0 < 60
    assert run.stderr.strip().count("\n") == 0 and f"nothing answers at '{LOOPBACK}:{port}'" in run.stderr
    assert not (tmp_path / "o").exists()
