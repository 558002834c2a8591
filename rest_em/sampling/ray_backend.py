"""E-step sampling over a Ray cluster: N independent engine replicas, sharded by problem.

    sampler = RaySampler(model_dir, engine="vllm", replicas=8, ray_address="auto", tensor_parallel_size=1)
    outs = sampler.generate(prompts, params, keys=problem_ids, shard_dir=run_dir / "iter_01" / "shards" / "samples")

Each replica is a Ray actor holding one ordinary sampler (``vllm`` or ``hf``, made by
``rest_em.sampling.make_sampler``) on ``tensor_parallel_size`` GPUs that Ray assigns to it (one node
per replica; ``num_gpus=tensor_parallel_size``, vLLM's multiprocessing executor inside the actor for
TP > 1). We never set ``CUDA_VISIBLE_DEVICES`` ourselves: Ray places the replicas on whatever GPUs and
nodes the cluster has. Why actors and not Ray Data's ``ray.data.llm`` processor: the processor keeps
one completion per row (ReST-EM wants ``n`` per problem: rows would be expanded n-fold and the prompt's
prefix cache shared by chance), it runs vLLM only (no transformers engine for CPU tests) and it hides
the engine, so a new checkpoint means a new pipeline; an actor keeps its engine and loads the next
checkpoint in place (``switch_model``).

Problems are split into shards of ``shard_size`` problems. Every finished shard is written atomically
to ``shard_dir/shard_NNNNN.jsonl`` as it returns, so a driver killed mid-stage recomputes only the
missing shards. Actors restart when their process dies (``max_restarts=-1``) and Ray retries the shard
that was running (``max_task_retries``); a shard that still fails is re-run by the driver, up to
``max_rounds`` times. Because a retried shard may repeat rows, rows are de-duplicated on
``(problem_id, sample_idx)``. Every problem is seeded by ``(seed, problem_id)`` (``sampling.seeding:
problem``, rest_em.sampling.seeding), so the rows do not depend on how problems were sharded, which
replica ran them or how often.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rest_em.sampling.params import Completion, SampleParams

logger = logging.getLogger(__name__)

RAY_ENGINES = ("auto", "vllm", "hf")


class _Replica:
    """One engine in a Ray actor process (``ray.remote`` is applied by :class:`RaySampler`)."""

    def __init__(self, model_path: str, engine: str, options: dict[str, Any]) -> None:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        from rest_em.processes import start_watchdog
        from rest_em.sampling import make_sampler

        # ray.kill ends this process only; the watchdog ends the engine's own processes (vLLM's EngineCore and
        # tensor-parallel workers) with it, so they never keep the GPU (vllm#55510).
        self._watchdog = start_watchdog()
        self.engine, self.options = engine, options
        self.path = model_path
        self.sampler = make_sampler(model_path, backend=engine, **options)

    def pid(self) -> int:
        return os.getpid()

    def current_path(self) -> str:
        return self.path

    def where(self) -> tuple[str, int]:
        import socket

        return socket.gethostname(), os.getpid()

    def engine_pids(self) -> list[int]:
        """The processes of this replica's engine (the actor's descendants, the watchdog excepted)."""
        from rest_em.processes import descendants

        return [r["pid"] for r in descendants(os.getpid()) if r["pid"] != self._watchdog.pid]

    def healthy(self) -> str | None:
        """None when the engine answers a one-token request, else what went wrong (after a failed shard)."""
        try:
            self.sampler.generate(["ok"], SampleParams(n=1, temperature=0.0, top_k=0, top_p=1.0, max_tokens=1, seed=0),
                                  desc="health check")
        except Exception as exc:  # the engine's process died, a CUDA error, ...
            return f"{type(exc).__name__}: {exc}"
        return None

    def sleep(self, level: int) -> str | None:
        return self.sampler.sleep(level)

    def wake(self, model_path: str) -> bool:
        if self.sampler.wake(model_path):
            self.path = model_path
            return True
        return False

    def load(self, model_path: str) -> None:
        if model_path == self.path:
            return
        switch = getattr(self.sampler, "switch_model", None)
        if switch is None or not switch(model_path):
            from rest_em.sampling import make_sampler

            self.sampler.close()
            self.sampler = make_sampler(model_path, backend=self.engine, **self.options)
        self.path = model_path

    def run_shard(self, model_path: str, keys: list[str], prompts: list[str], params: SampleParams) -> dict[str, Any]:
        from rest_em.sampling.seeding import generate_per_problem

        self.load(model_path)  # a restarted actor starts from its constructor's model: say which one
        outs = generate_per_problem(self.sampler, prompts, keys, params, desc="shard")
        rows = [{"problem_id": k, "sample_idx": j, "text": c.text, "finish_reason": c.finish_reason,
                 "num_tokens": c.num_tokens} for k, comps in zip(keys, outs) for j, c in enumerate(comps)]
        return {"pid": os.getpid(), "rows": rows}

    def close(self) -> None:
        self.sampler.close()


def absolute(path: str | Path) -> str:
    """A local path as an absolute one (a remote actor's working directory is not the driver's); a hub id as is."""
    p = Path(path).expanduser()
    return str(p.resolve()) if p.exists() or p.is_absolute() or str(path).startswith((".", "~")) else str(path)


def _fingerprint(model_path: str, keys: Sequence[str], prompts: Sequence[str], params: SampleParams, shard_size: int) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([model_path, repr(params), shard_size]).encode())
    for k, p in zip(keys, prompts):
        h.update(k.encode() + b"\x00" + p.encode() + b"\x01")
    return h.hexdigest()


class RaySampler:
    """:class:`rest_em.sampling.Sampler` over Ray actors; see the module docstring."""

    backend = "ray"
    sharded = True  # generate() takes keys= and shard_dir= (rest_em.generation passes them)

    def __init__(
        self,
        model_path: str,
        *,
        engine: str = "auto",
        replicas: int | None = None,
        ray_address: str | None = None,
        shard_size: int | None = None,
        max_rounds: int = 3,
        max_task_retries: int = 2,
        tensor_parallel_size: int = 1,
        start_timeout_s: float = 1800.0,
        close_timeout_s: float = 120.0,
        replica_cls: type = _Replica,  # tests pass a subclass that breaks its engine
        **engine_options: Any,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise ImportError("sampling.backend=ray needs Ray: pip install 'rest-em[ray]' (or `pip install ray`)") from None
        if engine not in RAY_ENGINES:
            raise ValueError(f"sampling.ray_engine must be one of {RAY_ENGINES}, got {engine!r}")
        self._own_ray = not ray.is_initialized()
        if self._own_ray:
            repo = str(Path(__file__).resolve().parents[2])
            env = {"PYTHONPATH": os.pathsep.join([repo, *filter(None, [os.environ.get("PYTHONPATH")])]),
                   "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
            # null: a new Ray on this machine (or the cluster RAY_ADDRESS names), never the one a stale
            # /tmp/ray/ray_current_cluster points to, which is where plain ray.init() would go
            address = ray_address or os.environ.get("RAY_ADDRESS") or "local"
            ray.init(address=address, runtime_env={"env_vars": env}, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if engine == "auto":
            engine = "vllm" if gpus else "hf"
        tp = tensor_parallel_size
        if replicas is None:
            replicas = max(1, gpus // tp) if gpus else 1
        options = dict(engine_options)
        if engine == "vllm":
            options["tensor_parallel_size"] = tp
            if tp > 1:  # inside an actor vLLM's Ray executor loses the placement group (vllm#30016): processes
                options.setdefault("distributed_executor_backend", "mp")
        num_gpus = (tp if engine == "vllm" else 1) if gpus else 0
        if gpus and replicas * num_gpus > gpus:
            raise ValueError(f"sampling.replicas={replicas} x {num_gpus} GPU(s) each needs {replicas * num_gpus} GPUs; "
                             f"the Ray cluster has {gpus}")
        self.model_path, self.engine, self.shard_size = absolute(model_path), engine, shard_size
        self.max_rounds, self.start_timeout_s, self.close_timeout_s = max_rounds, start_timeout_s, close_timeout_s
        self._options = options
        self._actor_cls = ray.remote(replica_cls).options(num_cpus=1, num_gpus=num_gpus, max_restarts=-1,
                                                       max_task_retries=max_task_retries)
        t0 = time.perf_counter()
        self._actors = [self._new_actor() for _ in range(replicas)]
        self._in_flight: dict[int, int] = {}
        self._restarting: dict[int, Any] = {}  # replica -> ref of its new actor's start
        self.retried_shards = 0
        self.restarted_replicas = 0
        try:  # wait until every engine is up (and fail early), but not for ever: a replica Ray cannot place waits
            ray.get([a.pid.remote() for a in self._actors], timeout=start_timeout_s)
        except Exception as exc:
            self.close()
            if isinstance(exc, ray.exceptions.GetTimeoutError):
                raise RuntimeError(f"Ray sampler: {replicas} replica(s) of {num_gpus} GPU(s) each were not up after "
                                   f"{start_timeout_s:.0f} s: the cluster may lack the GPUs (`ray status`), or an engine "
                                   "hangs at start (the replicas' logs: /tmp/ray/session_latest/logs)") from None
            raise
        logger.info("Ray sampler: %d %s replica(s) of %s (%d GPU(s) each) started in %.1fs", replicas, engine,
                    self.model_path, num_gpus, time.perf_counter() - t0)

    # -- the Sampler interface ------------------------------------------------------------------------

    def _new_actor(self) -> Any:
        return self._actor_cls.remote(self.model_path, self.engine, self._options)

    def _check_replica(self, replica: int, timeout_s: float = 120.0) -> str | None:
        """None when the replica's engine still answers (the shard failed for another reason), else why not."""
        import ray

        try:
            return ray.get(self._actors[replica].healthy.remote(), timeout=timeout_s)
        except Exception as exc:  # died, or hangs
            return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"

    def _restart(self, replica: int) -> Any:
        """Kill replica ``replica`` (its watchdog ends its engine's processes) and start a new one on the current
        model; returns the reference that resolves when it is up."""
        import ray

        try:
            ray.kill(self._actors[replica], no_restart=True)
        except Exception:  # already gone
            pass
        self._actors[replica] = self._new_actor()
        self.restarted_replicas += 1
        ref = self._actors[replica].pid.remote()
        self._restarting[replica] = ref
        return ref

    def switch_model(self, model_path: str) -> bool:
        import ray

        model_path = absolute(model_path)
        ray.get([a.load.remote(model_path) for a in self._actors])
        self.model_path = model_path
        return True

    def sleep(self, level: int) -> str | None:
        """Every replica's engine asleep (see ``VLLMSampler.sleep``); the reasons of those that cannot, else None."""
        import ray

        reasons = [r for r in ray.get([a.sleep.remote(level) for a in self._actors]) if r]
        return "; ".join(sorted(set(reasons))) or None

    def wake(self, model_path: str) -> bool:
        import ray

        model_path = absolute(model_path)
        if not all(ray.get([a.wake.remote(model_path) for a in self._actors])):
            return False
        self.model_path = model_path
        return True

    def generate(self, prompts: Sequence[str], params: SampleParams, desc: str = "sampling",
                 keys: Sequence[str] | None = None, shard_dir: str | Path | None = None) -> list[list[Completion]]:
        if isinstance(prompts, str):
            raise TypeError("generate() takes a sequence of prompts, not a single string")
        prompts = list(prompts)
        keys = [str(k) for k in keys] if keys is not None else [f"#{i}" for i in range(len(prompts))]
        if len(set(keys)) != len(keys):
            raise ValueError("RaySampler.generate: keys must be unique (one per problem)")
        if not prompts:
            return []
        size = self.shard_size or max(1, -(-len(prompts) // (4 * len(self._actors))))
        shards = [list(range(i, min(i + size, len(prompts)))) for i in range(0, len(prompts), size)]
        directory = Path(shard_dir) if shard_dir is not None else None
        done: dict[int, list[dict[str, Any]]] = {}
        if directory is not None:
            done = self._load_shards(directory, _fingerprint(self.model_path, keys, prompts, params, size), len(shards))
        if done:
            logger.info("%s: %d of %d shards already on disk", desc, len(done), len(shards))
        self._run_shards(shards, keys, prompts, params, desc, done, directory)
        by_key: dict[str, dict[int, Completion]] = {k: {} for k in keys}
        for rows in done.values():
            for r in rows:  # a shard run twice (a retry) gives the same rows: keep one of each
                by_key[r["problem_id"]].setdefault(r["sample_idx"], Completion(r["text"], r["finish_reason"], r["num_tokens"]))
        out = []
        for k in keys:
            comps = by_key[k]
            if sorted(comps) != list(range(params.n)):
                raise RuntimeError(f"Ray sampling: problem {k} has samples {sorted(comps)}, expected 0..{params.n - 1}")
            out.append([comps[j] for j in range(params.n)])
        return out

    def close(self) -> None:
        """Close every replica's engine (its ``close``, up to ``close_timeout_s``), then kill the actors, then wait
        until the replicas' processes on this node are gone (their GPU memory with them)."""
        import ray

        actors, self._actors = getattr(self, "_actors", []), []
        local: list[dict[str, Any]] = []
        if actors and ray.is_initialized():
            import socket

            from rest_em.processes import descendants, identity

            try:  # pids of this node only: a remote pid means another process here
                places = ray.get([a.where.remote() for a in actors], timeout=10)
                local = [r for host, pid in places if host == socket.gethostname()
                         for r in [identity(pid), *descendants(pid)] if r]
            except Exception:  # dead or remote actors: nothing to wait for here
                local = []
            refs = [a.close.remote() for a in actors]
            done, pending = ray.wait(refs, num_returns=len(refs), timeout=self.close_timeout_s)
            if pending:
                logger.warning("Ray sampler: %d replica(s) did not close their engine within %.0f s; killing them",
                               len(pending), self.close_timeout_s)
            for a in actors:
                try:
                    ray.kill(a, no_restart=True)
                except Exception:  # already gone
                    pass
        if local:
            from rest_em.processes import alive, stop

            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and any(alive(r) for r in local):
                time.sleep(0.2)
            left = stop(local, grace_s=5)
            if left:
                logger.warning("Ray sampler: stopped %d replica process(es) that outlived their actor", len(left))
        if getattr(self, "_own_ray", False) and ray.is_initialized():
            ray.shutdown()
            self._own_ray = False

    # -- for tests and monitoring ---------------------------------------------------------------------

    def replica_pids(self) -> list[int]:
        import ray

        return ray.get([a.pid.remote() for a in self._actors])

    def in_flight(self) -> dict[int, int]:
        """``{replica index: shard index}`` of the shards running now."""
        return dict(self._in_flight)

    # -- internals ------------------------------------------------------------------------------------

    @staticmethod
    def _load_shards(directory: Path, fingerprint: str, count: int) -> dict[int, list[dict[str, Any]]]:
        from verifiers.io import read_jsonl, write_text_atomic

        plan = directory / "plan.json"
        if plan.exists() and json.loads(plan.read_text(encoding="utf-8")).get("fingerprint") != fingerprint:
            logger.info("%s: shards of another request (model, params or problems changed): discarded", directory)
            for old in directory.glob("shard_*.jsonl"):
                old.unlink()
        directory.mkdir(parents=True, exist_ok=True)
        write_text_atomic(plan, json.dumps({"fingerprint": fingerprint, "shards": count}))
        done = {}
        for i in range(count):
            f = directory / f"shard_{i:05d}.jsonl"
            if f.exists():
                done[i] = [row for _, row in read_jsonl(f)]
        return done

    def _run_shards(self, shards: list[list[int]], keys: list[str], prompts: list[str], params: SampleParams, desc: str,
                    done: dict[int, list[dict[str, Any]]], directory: Path | None) -> None:
        import ray
        from ray.exceptions import RayError
        from tqdm.auto import tqdm

        from verifiers.io import write_jsonl_atomic

        t0 = time.perf_counter()
        with tqdm(total=len(prompts) * params.n, desc=desc, unit="sample", dynamic_ncols=True) as bar:
            bar.update(sum(len(shards[i]) for i in done) * params.n)
            for round_ in range(self.max_rounds):
                todo = [i for i in range(len(shards)) if i not in done]
                if not todo:
                    break
                if round_:
                    self.retried_shards += len(todo)
                    logger.warning("%s: re-running %d failed shard(s) (round %d of %d)", desc, len(todo), round_ + 1,
                                   self.max_rounds)
                running: dict[Any, tuple[int, int]] = {}  # ref -> (replica, shard); shard -1: a restarted replica's start
                idle = [i for i in range(len(self._actors)) if i not in self._restarting]
                for replica, ref in self._restarting.items():
                    running[ref] = (replica, -1)
                while (todo and (idle or running)) or any(shard >= 0 for _, shard in running.values()):
                    while todo and idle:
                        replica, shard = idle.pop(0), todo.pop(0)
                        ref = self._actors[replica].run_shard.remote(self.model_path, [keys[i] for i in shards[shard]],
                                                                    [prompts[i] for i in shards[shard]], params)
                        running[ref] = (replica, shard)
                        self._in_flight[replica] = shard
                    ready, _ = ray.wait(list(running), num_returns=1)
                    replica, shard = running.pop(ready[0])
                    if shard < 0:  # a restarted replica is up (or failed to start: then it stays out)
                        self._restarting.pop(replica, None)
                        try:
                            ray.get(ready[0])
                            idle.append(replica)
                            logger.info("%s: replica %d restarted and back in rotation", desc, replica)
                        except RayError as exc:
                            logger.warning("%s: replica %d failed to restart: %s", desc, replica, str(exc).splitlines()[0])
                        continue
                    self._in_flight.pop(replica, None)
                    try:
                        result = ray.get(ready[0])
                    except RayError as exc:  # the retries Ray made failed too: the next round re-runs it
                        logger.warning("%s: shard %d failed on replica %d: %s", desc, shard, replica,
                                       str(exc).splitlines()[0])
                        problem = self._check_replica(replica)
                        if problem is None:
                            idle.append(replica)
                        else:  # out of rotation until its new engine is up
                            logger.warning("%s: replica %d is out of rotation (%s); restarting it", desc, replica, problem)
                            running[self._restart(replica)] = (replica, -1)
                        continue
                    if directory is not None:
                        write_jsonl_atomic(directory / f"shard_{shard:05d}.jsonl", result["rows"])
                    done[shard] = result["rows"]
                    bar.update(len(shards[shard]) * params.n)
                    idle.append(replica)
        missing = [i for i in range(len(shards)) if i not in done]
        for replica in list(self._restarting):  # let a restart finish before the next stage uses the replica
            try:
                ray.get(self._restarting.pop(replica), timeout=self.start_timeout_s)
            except Exception as exc:
                logger.warning("%s: replica %d failed to restart: %s", desc, replica, str(exc).splitlines()[0])
        if missing:
            raise RuntimeError(f"Ray sampling: {len(missing)} shard(s) still failed after {self.max_rounds} rounds "
                               f"(first: shard {missing[0]}); see the Ray logs (ray logs / /tmp/ray/session_latest)")
        logger.info("%s: %d shards on %d replica(s) in %.1fs", desc, len(shards), len(self._actors),
                    time.perf_counter() - t0)
