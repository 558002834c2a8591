"""The E-step over a local Ray cluster (issue #10): 2 CPU replicas of the transformers sampler, sharded by
problem, give the same rows (text included) as one unsharded sampler in per-problem seeding mode; a
replica killed mid-shard loses and duplicates nothing; a missing shard file is all a rerun recomputes.
Ray listens on the loopback interface only."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from rest_em.generation import generate_rows
from rest_em.sampling.params import SampleParams

# Loopback only: Ray otherwise turns 127.0.0.1 into the host's reachable address and its GCS and raylet listen
# on every interface. Read when ray is imported (ray_constants.ENABLE_RAY_CLUSTER).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
ray = pytest.importorskip("ray")  # the `ray` extra (Makefile EXTRAS)
REPO = Path(__file__).resolve().parents[2]
PARAMS = SampleParams(n=3, temperature=1.0, top_k=0, top_p=1.0, max_tokens=12, seed=7)


@pytest.fixture(scope="module")
def problems(chat_prompts):
    prompts = [p + extra for p in chat_prompts for extra in ("", " ")][:8]
    ids = [f"p/{i}" for i in range(len(prompts))]
    return SimpleNamespace(problems=[SimpleNamespace(problem_id=i) for i in ids], prompts=dict(zip(ids, prompts)))


@pytest.fixture(scope="module")
def unsharded(tiny_model_dir, problems):
    from rest_em.sampling.hf import HFSampler

    sampler = HFSampler(tiny_model_dir, dtype="float32")
    try:
        rows, _ = generate_rows(sampler, problems, PARAMS, 1, "unsharded", seeding="problem")
        batch_rows, _ = generate_rows(sampler, problems, PARAMS, 1, "batch")
    finally:
        sampler.close()
    assert [r["text"] for r in rows] != [r["text"] for r in batch_rows]  # the modes differ; batch stays the default
    return rows


@pytest.fixture(scope="module")
def ray_sampler(tiny_model_dir):
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), "OMP_WAIT_POLICY": "PASSIVE"}
    ray.init(address="local", num_cpus=4, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": env})
    from ray._private import services

    assert services.get_node_ip_address() == "127.0.0.1", "Ray would listen beyond the loopback interface"
    from rest_em.sampling import make_sampler

    t0 = time.monotonic()
    sampler = make_sampler(tiny_model_dir, backend="ray", engine="hf", replicas=2, shard_size=1, dtype="float32")
    print(f"2 Ray replicas up in {time.monotonic() - t0:.0f} s")
    yield sampler
    sampler.close()
    ray.shutdown()


def test_sharded_rows_equal_unsharded_rows(ray_sampler, problems, unsharded, tmp_path):
    """Before: no way to spread the E-step over nodes (data-parallel sampling pinned engines to this node's GPUs)."""
    t0 = time.monotonic()
    rows, stats = generate_rows(ray_sampler, problems, PARAMS, 1, "sharded", shard_dir=tmp_path / "shards")
    print(f"sharded E-step over 2 replicas: {time.monotonic() - t0:.1f} s")
    assert rows == unsharded and stats["backend"] == "ray"
    assert len(list((tmp_path / "shards").glob("shard_*.jsonl"))) == len(problems.problems)

    # A rerun finds its shards; only a missing one is recomputed.
    (tmp_path / "shards" / "shard_00003.jsonl").unlink()
    again, _ = generate_rows(ray_sampler, problems, PARAMS, 1, "resumed", shard_dir=tmp_path / "shards")
    assert again == unsharded


def test_a_replica_killed_mid_shard_loses_and_duplicates_nothing(ray_sampler, problems, unsharded, tmp_path):
    pids = ray_sampler.replica_pids()
    out: dict = {}

    def run() -> None:
        try:
            out["rows"] = generate_rows(ray_sampler, problems, PARAMS, 1, "killed", shard_dir=tmp_path / "shards")[0]
        except BaseException as exc:  # reported by the main thread
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and thread.is_alive() and time.monotonic() < deadline:
        busy = ray_sampler.in_flight()
        if list((tmp_path / "shards").glob("shard_*.jsonl")) and busy:
            replica = next(iter(busy))
            killed = pids[replica]
            os.kill(killed, signal.SIGKILL)  # the replica's process, while it samples a shard
        time.sleep(0.05)
    thread.join(timeout=300)
    assert "error" not in out, out.get("error")
    assert killed is not None, "the run finished before a replica could be killed"
    rows = out["rows"]
    keys = [(r["problem_id"], r["sample_idx"]) for r in rows]
    assert len(keys) == len(set(keys)) == len(problems.problems) * PARAMS.n
    assert rows == unsharded  # same rows, text included, after the restart and the retry
    assert killed not in ray_sampler.replica_pids()  # the killed replica was restarted


def test_a_replica_whose_engine_died_is_restarted_and_no_row_is_lost(ray_sampler, tiny_model_dir, problems, unsharded,
                                                                      tmp_path, monkeypatch):
    from rest_em.sampling.ray_backend import RaySampler, _Replica

    class Replica(_Replica):  # defined here, shipped to the actor by value (cloudpickle)
        def run_shard(self, model_path, keys, prompts, params):
            try:  # O_EXCL: exactly one replica loses its engine, even when both start a shard at once
                fd = os.open(flag_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                fd = None
            if fd is not None:
                with os.fdopen(fd, "w") as f:
                    f.write(str(os.getpid()))
                self.sampler.model = None  # the engine is gone mid-shard; the actor process lives on
            return super().run_shard(model_path, keys, prompts, params)

    flag_path = str(tmp_path / "engine-died")
    sampler = RaySampler(tiny_model_dir, engine="hf", replicas=2, shard_size=1, dtype="float32", replica_cls=Replica)
    try:
        pids = sampler.replica_pids()
        rows, _ = generate_rows(sampler, problems, PARAMS, 1, "engine-died", shard_dir=tmp_path / "shards")
        assert Path(flag_path).exists()
        assert rows == unsharded  # every row, once, text included
        assert sampler.restarted_replicas == 1 and sampler.retried_shards >= 1
        assert int(Path(flag_path).read_text()) not in sampler.replica_pids() and len(set(pids) & set(sampler.replica_pids())) == 1
    finally:
        sampler.close()


def test_relative_run_paths_reach_the_actors_absolute(ray_sampler, tiny_model_dir, tmp_path, monkeypatch):
    """Before: `output_dir: runs` reached remote actors as a path relative to their own working directory."""
    import shutil

    shutil.copytree(tiny_model_dir, tmp_path / "runs" / "x" / "iter_01" / "checkpoint")
    monkeypatch.chdir(tmp_path)
    relative = "runs/x/iter_01/checkpoint"
    assert ray_sampler.sleep(2) is None and ray_sampler.wake(relative)  # the loop's path between E-step and M-step
    expected = str(tmp_path / relative)
    assert ray.get([a.current_path.remote() for a in ray_sampler._actors]) == [expected] * 2
    assert ray_sampler.model_path == expected
    assert ray_sampler.switch_model(tiny_model_dir) and ray.get(ray_sampler._actors[0].current_path.remote()) == tiny_model_dir


def test_config_selects_the_ray_backend_and_its_options():
    from rest_em.config import load_config
    from rest_em.policy import Samplers

    cfg = load_config(None, ["sampling.backend=ray", "sampling.ray_address=auto", "sampling.replicas=8",
                             "sampling.ray_engine=vllm", "sampling.tensor_parallel_size=2", "sampling.shard_size=16"])
    options = Samplers(cfg).engine_options()
    assert {k: options[k] for k in ("engine", "replicas", "ray_address", "shard_size", "tensor_parallel_size")} == {
        "engine": "vllm", "replicas": 8, "ray_address": "auto", "shard_size": 16, "tensor_parallel_size": 2}
    warned = load_config(None, ["sampling.backend=hf", "sampling.shard_size=2"]).warnings()
    assert any("applies to sampling.backend=ray only" in w for w in warned)
    # `auto` is resolved against the Ray cluster's GPUs inside RaySampler: None reaches it
    assert Samplers(load_config(None, ["sampling.backend=ray"])).engine_options()["replicas"] is None


def test_removed_keys_name_their_replacement():
    from rest_em.config import ConfigError, load_config

    for key in ("sampling.ray_replicas=2", "sampling.data_parallel_size=2"):
        with pytest.raises(ConfigError, match="use sampling.replicas"):
            load_config(None, [key])


@pytest.mark.parametrize(("configured", "env", "expected"), [
    (None, None, "local"),  # never the cluster a stale /tmp/ray/ray_current_cluster names (plain ray.init() would join it)
    (None, "10.0.0.1:6379", "10.0.0.1:6379"),  # Ray's own convention: RAY_ADDRESS names the cluster
    ("auto", "10.0.0.1:6379", "auto"),
])
def test_ray_address_null_starts_ray_here_unless_ray_address_is_set(monkeypatch, configured, env, expected):
    from rest_em.sampling.ray_backend import RaySampler

    class Called(Exception):
        pass

    def init(address=None, **kwargs):
        raise Called(address)

    if env is None:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("RAY_ADDRESS", env)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    with pytest.raises(Called) as called:
        RaySampler("model", engine="hf", ray_address=configured)
    assert called.value.args == (expected,)
