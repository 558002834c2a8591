"""E-step sampling with transformers ``generate`` (the fallback backend; works wherever torch does).

Batched with left padding; each ``generate`` call takes ``batch_size`` prompts and returns ``n``
sequences per prompt. Prompts are sorted by length so a batch holds prompts of similar length (less
padding), and results are put back in prompt order. Sampling is seeded with ``torch.manual_seed`` once
per :meth:`HFSampler.generate` call, so the same prompts, parameters and batch size give the same
completions on the same machine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from rest_em.sampling.params import Completion, SampleParams, truncate_at_stop
from rest_em.tokens import available_cpus, encode_prompt, eos_token_ids, resolve_dtype

logger = logging.getLogger(__name__)

# Sequences (prompts x n) per generate call when batch_size is not given: large enough to keep the
# matrix multiplies efficient on a CPU, small enough for the KV cache of a ~100M-1B model.
_DEFAULT_SEQUENCES_PER_CALL = 64


class HFSampler:
    """:class:`rest_em.sampling.Sampler` backed by transformers ``generate``."""

    backend = "hf"

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str = "auto",
        batch_size: int | None = None,
        device: str | None = None,
        num_threads: int | None = None,
        **ignored,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        if ignored:
            logger.debug("transformers sampler ignores engine options %s", sorted(ignored))
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cpu":
            torch.set_num_threads(num_threads or available_cpus())
        self.dtype = resolve_dtype(dtype, self.device, "sampling dtype (transformers)")
        self.batch_size = batch_size
        self.model_path = model_path
        t0 = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.tokenizer.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=self.dtype).to(self.device).eval()
        self.eos_ids = eos_token_ids(self.model, self.tokenizer)
        if self.tokenizer.pad_token_id is None:
            # Left padding only needs *some* id under the attention mask; EOS is the usual choice.
            self.tokenizer.pad_token = self.tokenizer.convert_ids_to_tokens(self.eos_ids[0])
        self.pad_id = self.tokenizer.pad_token_id
        # A clean generation config: the checkpoint's own sampling defaults (temperature, top_k,
        # repetition_penalty, ...) must not leak into ours -- every parameter is set per call.
        self.model.generation_config = GenerationConfig(
            eos_token_id=self.eos_ids, pad_token_id=self.pad_id, bos_token_id=self.tokenizer.bos_token_id
        )
        logger.info(
            "transformers sampler: %s on %s (%s, %d threads) loaded in %.1fs",
            model_path, self.device, str(self.dtype).removeprefix("torch."), torch.get_num_threads(),
            time.perf_counter() - t0,
        )

    # -- public API ---------------------------------------------------------------------------------

    def generate(
        self, prompts: Sequence[str], params: SampleParams, desc: str = "sampling"
    ) -> list[list[Completion]]:
        import torch
        from tqdm.auto import tqdm

        if isinstance(prompts, str):
            raise TypeError("generate() takes a sequence of prompts, not a single string")
        if not prompts:
            return []
        encoded = [encode_prompt(self.tokenizer, p) for p in prompts]
        # Sequences actually generated per prompt: greedy decoding gives n identical completions,
        # so generate one and copy it.
        per_prompt = 1 if params.greedy else params.n
        batch_size = self.batch_size or max(1, _DEFAULT_SEQUENCES_PER_CALL // per_prompt)
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]), reverse=True)
        results: list[list[Completion] | None] = [None] * len(prompts)
        if params.seed is not None:
            torch.manual_seed(params.seed)
        total_tokens = 0
        t0 = time.perf_counter()
        with tqdm(total=len(prompts) * params.n, desc=desc, unit="sample", dynamic_ncols=True) as bar:
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                batch = self._generate_batch([encoded[i] for i in idx], params, per_prompt)
                for i, comps in zip(idx, batch):
                    if per_prompt != params.n:
                        comps = comps * params.n
                    results[i] = comps
                    total_tokens += sum(c.num_tokens for c in comps)
                elapsed = max(time.perf_counter() - t0, 1e-9)
                bar.update(len(idx) * params.n)
                bar.set_postfix(tok_s=f"{total_tokens / elapsed:.0f}")
        elapsed = time.perf_counter() - t0
        logger.info(
            "%s: %d samples, %d tokens in %.1fs (%.1f samples/s, %.0f tokens/s)",
            desc, len(prompts) * params.n, total_tokens, elapsed,
            len(prompts) * params.n / max(elapsed, 1e-9), total_tokens / max(elapsed, 1e-9),
        )
        return results  # type: ignore[return-value]

    def switch_model(self, model_path: str) -> bool:
        """Serve ``model_path`` from now on: its weights are loaded into the model in place (same
        architecture and tokenizer required; the tokenizer, threads and generation config stay).

        True when done; False, with the reason logged, when the checkpoint does not fit this model
        (then close this sampler and make a new one).
        """
        import torch

        from rest_em.sampling.checkpoints import switch_incompatibility

        model_path = str(model_path)
        if model_path == self.model_path:
            return True
        reason = "the sampler is closed" if self.model is None else switch_incompatibility(self.model_path, model_path)
        if reason is None:
            from transformers import AutoModelForCausalLM

            t0 = time.perf_counter()
            new = AutoModelForCausalLM.from_pretrained(model_path, dtype=self.dtype)
            missing, unexpected = self.model.load_state_dict(new.state_dict(), strict=False)
            del new
            if missing or unexpected:
                reason = f"weights do not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
                self.model = None  # partly overwritten: unusable
            else:
                if self.device != "cpu" and torch.cuda.is_available():
                    torch.cuda.empty_cache()
                logger.info("transformers sampler: switched to %s in %.1fs", model_path, time.perf_counter() - t0)
                self.model_path = model_path
                return True
        logger.warning("transformers sampler cannot switch to %s in place: %s", model_path, reason)
        return False

    def sleep(self, level: int) -> str | None:
        """Free the accelerator memory until :meth:`wake`: level 1 moves the weights to the CPU, level 2 drops them
        (a new checkpoint comes next). On the CPU nothing is freed: the model stays for ``wake`` to switch. None when
        done, else why not."""
        import gc

        import torch

        if self.model is None:
            return "the sampler is closed"
        if self.device != "cpu":
            if level == 1:
                self.model.to("cpu")
            else:
                self.model = self.model.to("meta")  # the architecture stays; wake loads the weights
            gc.collect()
            torch.cuda.empty_cache()
        self._asleep = level
        return None

    def wake(self, model_path: str) -> bool:
        """After :meth:`sleep`: serve ``model_path`` (the same one, or a checkpoint of the same architecture)."""
        level, self._asleep = getattr(self, "_asleep", 0), 0
        model_path = str(model_path)
        if self.model is None:
            return False
        if self.device != "cpu" and level == 2:
            from transformers import AutoModelForCausalLM

            from rest_em.sampling.checkpoints import switch_incompatibility

            reason = switch_incompatibility(self.model_path, model_path) if model_path != self.model_path else None
            if reason is not None:
                logger.warning("transformers sampler cannot switch to %s in place: %s", model_path, reason)
                self.model = None
                return False
            self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=self.dtype).to(self.device).eval()
            self.model_path = model_path
            return True
        if self.device != "cpu":
            self.model.to(self.device)
        return self.switch_model(model_path)

    def close(self) -> None:
        import gc

        import torch

        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # -- internals ----------------------------------------------------------------------------------

    def _generate_batch(
        self, batch_ids: list[list[int]], params: SampleParams, per_prompt: int
    ) -> list[list[Completion]]:
        import torch

        if self.model is None:
            raise RuntimeError("sampler is closed")
        width = max(len(ids) for ids in batch_ids)
        input_ids = torch.full((len(batch_ids), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch_ids), width), dtype=torch.long)
        for row, ids in enumerate(batch_ids):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention[row, width - len(ids) :] = 1
        kwargs = dict(
            max_new_tokens=params.max_tokens,
            num_return_sequences=per_prompt,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
            # Explicit neutral values: nothing is inherited from a checkpoint's generation config.
            repetition_penalty=1.0,
            min_new_tokens=0,
            num_beams=1,
        )
        if params.greedy:
            kwargs.update(do_sample=False, temperature=None, top_k=None, top_p=None)
        else:
            kwargs.update(
                do_sample=True,
                temperature=params.temperature,
                top_k=params.top_k if params.top_k_enabled else 0,
                top_p=params.top_p,
            )
        if params.stop:
            # Stops generation early; the text is still cut post hoc below (exact character position).
            kwargs.update(stopping_criteria=[_StopStrings(self.tokenizer, params.stop, prompt_width=width)])
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device), **kwargs
            )
        generated = out[:, width:].tolist()
        completions = [self._to_completion(row, params) for row in generated]
        return [completions[i * per_prompt : (i + 1) * per_prompt] for i in range(len(batch_ids))]

    def _to_completion(self, tokens: list[int], params: SampleParams) -> Completion:
        # A row ends at its first EOS, which counts as a generated token (as in vLLM). A row that
        # finished on a stop string is followed by pad tokens: they are special, so decode drops
        # them, and the token count comes from the stop string's position instead.
        end = next((j for j, t in enumerate(tokens) if t in self.eos_ids), None)
        body = tokens if end is None else tokens[:end]
        text = self.tokenizer.decode(body, skip_special_tokens=True)
        if params.stop:
            cut_text, was_cut = truncate_at_stop(text, params.stop)
            if was_cut:
                return Completion(cut_text, "stop", self._tokens_to_stop(body, params.stop))
        if end is not None:
            return Completion(text, "stop", end + 1)
        return Completion(text, "length", len(body))

    def _tokens_to_stop(self, body: list[int], stop: tuple[str, ...]) -> int:
        """Smallest prefix length of ``body`` whose text contains a stop string (binary search:
        containment is monotone in the prefix length)."""
        lo, hi = 1, len(body)
        while lo < hi:
            mid = (lo + hi) // 2
            if truncate_at_stop(self.tokenizer.decode(body[:mid], skip_special_tokens=True), stop)[1]:
                hi = mid
            else:
                lo = mid + 1
        return lo


def _StopStrings(tokenizer, stop: tuple[str, ...], prompt_width: int, slack: int = 4):
    """A ``StoppingCriteria`` that finishes a row once its *generated* text contains a stop string.

    transformers' own ``stop_strings`` matches on vocabulary strings and was seen to stop byte-level
    tokenizers early, before the decoded text contained the stop string; decoding the tail of each row
    is exact. Only the last few tokens are decoded: a stop string that first appears at this step
    ends in the newest token, so it lies within the last ``len(stop) + slack`` tokens.
    """
    import torch
    from transformers import StoppingCriteria

    window = max(len(s) for s in stop) + slack

    class StopStrings(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            tails = input_ids[:, prompt_width:][:, -window:].tolist()
            texts = tokenizer.batch_decode(tails, skip_special_tokens=True)
            done = [any(s in text for s in stop) for text in texts]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StopStrings()
