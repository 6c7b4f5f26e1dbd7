"""Results that cannot be corrupted: atomic writes, one writer per directory, checked chunk files and
checked result directories (issue 10)."""

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import warnings

import jax
import numpy as np
import pytest

import jaxfit
from jaxfit.io import files as fsio
from jaxfit.engine.store import CheckpointWarning, ChunkStore
from jaxfit.io.lock import DirLock, LockedError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data():
    return jaxfit.datasets.sum_bin(n=64, seed=0)


@pytest.fixture(scope="module")
def cfgs():
    return [jaxfit.Config(hidden=(4,), epochs=2, seed=s) for s in range(4)]


@pytest.fixture(scope="module")
def ref(data, cfgs):
    return jaxfit.sweep(data, cfgs, chunk_size=2)


@pytest.fixture(scope="module")
def other(data):  # another spec: other configs, other count
    return jaxfit.sweep(data, [jaxfit.Config(hidden=(3,), epochs=3, lr=0.05, seed=s) for s in range(2)])


def assert_same(a, b):
    assert a.configs == b.configs
    assert set(a.curves) == set(b.curves)
    for m in a.curves:
        np.testing.assert_array_equal(a.curves[m], b.curves[m], err_msg=m)
    for i in range(len(a)):
        for x, y in zip(jax.tree_util.tree_leaves(a.params(i)), jax.tree_util.tree_leaves(b.params(i))):
            np.testing.assert_array_equal(x, y)
        for x, y in zip(jax.tree_util.tree_leaves(a.model_state(i)), jax.tree_util.tree_leaves(b.model_state(i))):
            np.testing.assert_array_equal(x, y)


def leftovers(d):
    """Temporary or hidden files left in d."""
    return sorted(f for f in os.listdir(d) if f.startswith(".") or f.endswith(".tmp"))


def enospc(*a, **k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# ----------------------------------------------------------------------------- fsio
def test_atomic_write_failure_leaves_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "x.json"
    fsio.write_json(target, {"old": 1})
    with monkeypatch.context() as m:
        m.setattr(os, "replace", enospc)
        with pytest.raises(fsio.OutputError) as e:
            fsio.write_json(target, {"new": 2})
    msg = str(e.value)
    assert "\n" not in msg and str(target) in msg and "no space left on device" in msg
    with monkeypatch.context() as m:
        m.setattr(np, "savez", enospc)
        with pytest.raises(fsio.OutputError, match="no space left on device"):
            fsio.write_npz(tmp_path / "a.npz", {"a": np.zeros(3)})

    def denied(f):
        f.write(b"half")
        raise PermissionError(errno.EACCES, "Permission denied")

    with pytest.raises(fsio.OutputError, match=r"x\.json: permission denied$"):
        fsio.atomic_write(target, denied)
    assert json.loads(target.read_text()) == {"old": 1}  # untouched
    assert sorted(os.listdir(tmp_path)) == ["x.json"]  # no temporaries, no a.npz


def test_two_writers_of_one_file_never_share_a_temporary(tmp_path):
    target = tmp_path / "c.bin"
    names = []

    def outer(f):
        names.append(os.readlink(f"/proc/self/fd/{f.fileno()}"))
        f.write(b"outer")
        inner = fsio.atomic_write(target, lambda g: (names.append(os.readlink(f"/proc/self/fd/{g.fileno()}")),
                                                     g.write(b"inner")))
        assert inner.size == 5

    w = fsio.atomic_write(target, outer)
    assert len(set(names)) == 2 and all(f".c.bin.{os.getpid()}." in n for n in names)
    assert target.read_bytes() == b"outer" and w.size == 5  # the last rename wins, whole
    assert leftovers(tmp_path) == []


def test_check_writable(tmp_path):
    d = tmp_path / "new" / "dir"
    assert fsio.check_writable(d) == str(d) and os.listdir(d) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(fsio.OutputError) as e:
        fsio.check_writable(tmp_path / "file" / "sub")
    assert "\n" not in str(e.value) and "file" in str(e.value)


@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True,
                           timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"cannot mount a tmpfs here ({e})")
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=10)


def test_a_full_disk_is_one_line_and_leaves_nothing_partial(small_tmpfs, ref):
    with pytest.raises(fsio.OutputError) as e:
        fsio.write_bytes(small_tmpfs / "big.bin", b"x" * 400_000)
    assert "\n" not in str(e.value) and "big.bin: no space left on device" in str(e.value)
    assert os.listdir(small_tmpfs) == []
    filler = small_tmpfs / "filler"

    def fill(leave):  # fill the disk, then free `leave` bytes
        with open(filler, "ab", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        os.truncate(filler, max(0, os.path.getsize(filler) - leave))

    fill(0)
    with pytest.raises(fsio.OutputError, match="no space left on device"):
        fsio.check_writable(small_tmpfs / "out")
    fill(20_000)  # a result save fails part way
    with pytest.raises(fsio.OutputError) as e:
        ref.save(small_tmpfs / "out")
    assert "\n" not in str(e.value) and "no space left on device" in str(e.value)
    assert leftovers(small_tmpfs / "out") == []
    with pytest.raises(ValueError, match="missing manifest.json"):
        jaxfit.SweepResult.load(small_tmpfs / "out")
    # a checkpoint chunk on a full disk
    fill(8_192)
    store = ChunkStore(small_tmpfs / "chunks")
    key = store.key("fp", ref.configs[:1])
    out = [{"metrics": {m: ref.curves[m][0] for m in ref.curves},
            "params": {"big": np.zeros(50_000, np.float32)}, "model_state": {}}]
    with pytest.raises(fsio.OutputError, match=r"chunk-.*\.npz: no space left on device"):
        store.put(key, out)
    assert os.listdir(small_tmpfs / "chunks") == []


# ----------------------------------------------------------------------------- locks
def test_second_lock_on_a_directory_is_refused_with_pid_and_host(tmp_path):
    with DirLock(tmp_path / "out") as first:
        assert first.held and (tmp_path / "out" / ".jaxfit.lock").exists()
        with pytest.raises(LockedError) as e:
            DirLock(tmp_path / "out").acquire()
        msg = str(e.value)
        assert f"pid {os.getpid()}" in msg and f"host {socket.gethostname()}" in msg and "--out" in msg
        assert "\n" not in msg
    assert not (tmp_path / "out" / ".jaxfit.lock").exists()
    with DirLock(tmp_path / "out"):  # free again
        pass


def test_release_removes_only_our_own_lock(tmp_path):
    lock = DirLock(tmp_path).acquire()
    theirs = {"pid": os.getpid(), "host": socket.gethostname(), "started": "then", "token": "not-ours"}
    (tmp_path / ".jaxfit.lock").write_text(json.dumps(theirs))
    lock.release()
    assert json.loads((tmp_path / ".jaxfit.lock").read_text()) == theirs


def dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_lock_of_a_dead_pid_is_taken_over(tmp_path):
    stale = {"pid": dead_pid(), "host": socket.gethostname(), "started": "2020-01-01T00:00:00", "token": "x"}
    (tmp_path / ".jaxfit.lock").write_text(json.dumps(stale))
    with DirLock(tmp_path) as lock:
        assert lock.taken_over == stale
        assert json.loads((tmp_path / ".jaxfit.lock").read_text())["pid"] == os.getpid()
    assert not (tmp_path / ".jaxfit.lock").exists()
    # a lock from another host cannot be checked: respected
    far = {**stale, "host": "elsewhere.example"}
    (tmp_path / ".jaxfit.lock").write_text(json.dumps(far))
    with pytest.raises(LockedError, match=f"pid {far['pid']} on host elsewhere.example since 2020"):
        DirLock(tmp_path).acquire()
    # an unreadable lock: being created (respected) while fresh, left by a crash (stale) when old
    (tmp_path / ".jaxfit.lock").write_text("")
    with pytest.raises(LockedError, match="being created or cannot be read"):
        DirLock(tmp_path).acquire()
    old = time.time() - 3600
    os.utime(tmp_path / ".jaxfit.lock", (old, old))
    with DirLock(tmp_path) as lock:
        assert lock.taken_over == {}


def test_racing_for_a_stale_lock_exactly_one_wins(tmp_path):
    stale = {"pid": dead_pid(), "host": socket.gethostname(), "started": "then", "token": "x"}
    for _ in range(3):
        (tmp_path / ".jaxfit.lock").write_text(json.dumps(stale))
        n = 8
        barrier = threading.Barrier(n)
        won, refused = [], []

        def take():
            lock = DirLock(tmp_path)
            barrier.wait()
            try:
                lock.acquire()
                won.append(lock)
            except LockedError:
                refused.append(1)

        threads = [threading.Thread(target=take) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(won) == 1 and len(refused) == n - 1
        assert json.loads((tmp_path / ".jaxfit.lock").read_text())["token"] == won[0]._token
        won[0].release()
        assert not (tmp_path / ".jaxfit.lock").exists()


# ----------------------------------------------------------------------------- chunks
def chunk_files(data, cfgs, d):
    store = ChunkStore(d)
    return [d / f"chunk-{store.key(data.fingerprint(), cfgs[k:k + 2], matmul_precision='highest')}.npz"
            for k in (0, 2)]


def resume(data, cfgs, d):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        r = jaxfit.sweep(data, cfgs, chunk_size=2, checkpoint_dir=d)
    return r, [str(x.message) for x in w if issubclass(x.category, CheckpointWarning)]


def truncate(f, ref, data):
    f.write_bytes(f.read_bytes()[: os.path.getsize(f) // 2])


def bit_flip(f, ref, data):
    raw = bytearray(f.read_bytes())
    w = np.asarray(ref.params(0)["dense"][0]["b"]).tobytes()  # config 0's first biases, inside chunk 0
    at = raw.find(w)
    assert at > 0
    raw[at + 5] ^= 0x10
    f.write_bytes(bytes(raw))


def mislabel(f, ref, data):
    other_chunk = [g for g in f.parent.glob("chunk-*.npz") if g != f][0]
    shutil.copyfile(other_chunk, f)  # a valid chunk file, under another chunk's name


@pytest.mark.parametrize("damage, problem", [(truncate, "unreadable"), (bit_flip, "unreadable|sha256"),
                                              (mislabel, "another chunk's file")])
def test_a_damaged_chunk_is_reported_set_aside_and_retrained(data, cfgs, ref, tmp_path, damage, problem):
    d = tmp_path / "ck"
    first, warned = resume(data, cfgs, d)
    assert warned == [] and [p["resumed"] for p in first.meta["plans"]] == [0]
    files = chunk_files(data, cfgs, d)
    assert all(f.exists() for f in files)
    damage(files[0], ref, data)
    r, warned = resume(data, cfgs, d)
    assert len(warned) == 1 and files[0].name in warned[0] and "\n" not in warned[0]
    import re
    assert re.search(problem, warned[0]) and "moved aside" in warned[0] and "retraining" in warned[0]
    assert (d / (files[0].name + ".bad")).exists()
    assert [p["resumed"] for p in r.meta["plans"]] == [1]  # chunk 1 reused, chunk 0 retrained
    assert_same(r, ref)
    again, warned = resume(data, cfgs, d)  # the retrained chunk was written anew, and is good
    assert warned == [] and [p["resumed"] for p in again.meta["plans"]] == [2]
    assert_same(again, ref)


def test_a_chunk_from_other_settings_or_an_old_format_is_not_trusted(tmp_path, ref):
    store = ChunkStore(tmp_path)
    out = [{"metrics": {m: ref.curves[m][0, :2] for m in ref.curves}, "params": ref.params(0),
            "model_state": ref.model_state(0)}]
    key = store.key("fp", ref.configs[:1], matmul_precision="highest")
    store.put(key, out)
    assert store.get(key)[0]["params"]["dense"][0]["w"].tobytes() == np.asarray(
        ref.params(0)["dense"][0]["w"]).tobytes()
    other = ChunkStore(tmp_path)
    assert other.key("fp", ref.configs[:1], matmul_precision="default") == key  # same name, other numbers
    with pytest.warns(CheckpointWarning, match="matmul precision 'highest', this run needs 'default'"):
        assert other.get(key) is None
    assert not store.has(key) and (tmp_path / f"chunk-{key}.npz.bad").exists()
    np.savez(tmp_path / f"chunk-{key}.npz", __n__=np.array(1))  # written by jaxfit before this check
    with pytest.warns(CheckpointWarning, match=r"no __meta__ record"):
        assert store.get(key) is None


# ----------------------------------------------------------------------------- result directories
def test_save_load_round_trip_is_unchanged(ref, tmp_path):
    path = ref.save(tmp_path / "r")
    assert sorted(os.listdir(path)) == ["configs.json", "curves.npz", "manifest.json", "meta.json", "params.npz",
                                        "table.csv", "table.parquet"]
    back = jaxfit.SweepResult.load(path)
    assert_same(back, ref)
    assert json.loads(json.dumps(back.meta, default=str)) == json.loads(json.dumps(ref.meta, default=str))
    import pandas as pd
    csv = pd.read_csv(os.path.join(path, "table.csv"), index_col="config")
    np.testing.assert_array_equal(csv["final_val_loss"].to_numpy(), ref.table["final_val_loss"].to_numpy())
    man = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert man["n_configs"] == 4 and man["dataset_fingerprint"] == ref.meta["dataset"]["fingerprint"]
    assert man["files"]["params.npz"]["bytes"] == os.path.getsize(tmp_path / "r" / "params.npz")
    ref.save(path)  # saving again over itself is fine
    assert_same(jaxfit.SweepResult.load(path), ref)


def refused(path, match):
    with pytest.raises(ValueError, match=match) as e:
        jaxfit.SweepResult.load(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_incomplete_or_mixed_result_directories_are_refused(ref, other, tmp_path):
    def fresh(name):
        return ref.save(tmp_path / name)

    os.remove(os.path.join(fresh("deleted"), "curves.npz"))
    refused(tmp_path / "deleted", r"curves\.npz: missing \(listed in manifest\.json\)")
    p = fresh("truncated")
    f = os.path.join(p, "params.npz")
    os.truncate(f, os.path.getsize(f) - 100)
    refused(p, r"params\.npz: \d+ bytes, manifest\.json says \d+ \(truncated")
    p = fresh("flipped")
    raw = bytearray(open(os.path.join(p, "table.parquet"), "rb").read())
    raw[len(raw) // 2] ^= 1
    open(os.path.join(p, "table.parquet"), "wb").write(bytes(raw))
    refused(p, r"table\.parquet: sha256 mismatch")
    os.remove(os.path.join(fresh("nomanifest"), "manifest.json"))
    refused(tmp_path / "nomanifest", r"missing manifest\.json \(an interrupted save\?\)")
    # one file from another spec's result, with a manifest forged to match the files: the files disagree
    p = fresh("mixed")
    shutil.copyfile(os.path.join(other.save(tmp_path / "o"), "params.npz"), os.path.join(p, "params.npz"))
    refused(p, r"params\.npz: (sha256 mismatch|\d+ bytes)")
    man = json.loads(open(os.path.join(p, "manifest.json")).read())
    size, digest = fsio.sha256_file(os.path.join(p, "params.npz"))
    man["files"]["params.npz"] = {"bytes": size, "sha256": digest}
    fsio.write_json(os.path.join(p, "manifest.json"), man)
    refused(p, r"params\.npz: holds 2 configs, configs\.json 4")
    refused(tmp_path / "nowhere", "no such directory")


def test_a_result_saved_before_manifests_is_refused_with_how_to_rebuild(ref, tmp_path):
    p = ref.save(tmp_path / "old")
    os.remove(os.path.join(p, "manifest.json"))
    os.remove(os.path.join(p, "table.csv"))
    meta = json.loads(open(os.path.join(p, "meta.json")).read())
    meta["format_version"] = 1
    open(os.path.join(p, "meta.json"), "w").write(json.dumps(meta))
    msg = refused(p, "older jaxfit")
    assert "--resume" in msg and "manifest" in msg


CHILD = """
import os, sys, time
import jaxfit
from jaxfit.io import files as fsio
a, b, target, pause = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
ra, rb = jaxfit.SweepResult.load(a), jaxfit.SweepResult.load(b)
real = fsio.atomic_write
saves = 0
def traced(path, fn):
    w = real(path, fn)
    print(f"{saves} {os.path.basename(os.fspath(path))}", flush=True)
    time.sleep(pause)
    return w
fsio.atomic_write = traced
print("ready", flush=True)
while True:
    saves += 1
    (rb if saves % 2 else ra).save(target)
"""


def run_child_and_kill(tmp_path, ref, other, stop_at, pause, tag):
    a, b = ref.save(tmp_path / "A"), other.save(tmp_path / "B")
    target = tmp_path / f"target-{tag}"
    shutil.copytree(a, target)  # an earlier result of another spec, being overwritten by B, A, B...
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "JAX_PLATFORMS": "cpu"}
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CHILD), a, b, str(target), str(pause)],
                             stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "ready"
        if stop_at is None:
            child.stdout.readline()  # the loop is running
            time.sleep(0.05 + (uuid.uuid4().int % 100) / 400)  # then anywhere in it
        else:
            for line in child.stdout:
                if line.split() == stop_at:
                    break
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    # only temporaries may be left (the killed writer could not remove its own), never a partial final file
    assert all(f.endswith(".tmp") for f in leftovers(target))
    return target


def test_kill_9_during_a_save_over_another_result_never_loads_a_mix(ref, other, tmp_path):
    # killed after B's curves.npz replaced A's (A's params, meta and manifest still there): refused
    t = run_child_and_kill(tmp_path, ref, other, ["1", "curves.npz"], 0.5, "mid")
    refused(t, r"(sha256 mismatch|bytes, manifest\.json says)")
    # killed right after B's manifest: B, whole
    t = run_child_and_kill(tmp_path, ref, other, ["1", "manifest.json"], 0.5, "end")
    assert_same(jaxfit.SweepResult.load(t), other)
    # killed at a random moment of a tight save loop: A, B, or refused; never a silent mix
    t = run_child_and_kill(tmp_path, ref, other, None, 0.0, "any")
    try:
        got = jaxfit.SweepResult.load(t)
    except ValueError as e:
        assert "\n" not in str(e) and str(t) in str(e)
    else:
        assert_same(got, ref if len(got) == len(ref) else other)
    ref.save(t)  # the next save clears the dead writer's temporaries and is whole
    assert leftovers(t) == []
    assert_same(jaxfit.SweepResult.load(t), ref)
