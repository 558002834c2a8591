"""Prompt formats: the model's chat template (instruct models) or few-shot text (base models).

    fmt = make_prompt_format(model_path, "auto", task)
    prompt = fmt.render(problem)          # the exact string the sampler continues and SFT trains on
    stop = fmt.stop                       # stop strings the format needs (few-shot: the next "Problem:")

``auto`` picks ``chat`` when the tokenizer has a chat template, ``fewshot`` otherwise. The same
rendered prompt is used by the E-step, the M-step (as the SFT prompt) and the evaluation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from rest_em.tasks.base import Problem, Task, TaskPrompt

logger = logging.getLogger(__name__)

FEWSHOT_STOP = ("\n\nProblem:", "\nProblem:")


def user_message(problem: Problem, instruction: str) -> str:
    return f"{problem.question}\n\n{instruction}"


def fewshot_text(problem: Problem, instruction: str, examples: Sequence[Problem]) -> str:
    shots = "".join(f"Problem:\n{user_message(ex, instruction)}\n\nSolution:\n{ex.solution}\n\n" for ex in examples)
    return f"{shots}Problem:\n{user_message(problem, instruction)}\n\nSolution:\n"


@dataclass
class PromptFormat:
    style: str  # "chat" | "fewshot"
    instruction: str
    fewshot: list[Problem] = field(default_factory=list)
    chat_template: Callable[[list[dict[str, str]]], str] | None = None
    prompt: TaskPrompt | None = None  # the task's own prompt text (code tasks), else the generic prompts

    @property
    def stop(self) -> tuple[str, ...]:
        if self.prompt is not None:
            return tuple(self.prompt.stop if self.style == "fewshot" else self.prompt.chat_stop)
        return FEWSHOT_STOP if self.style == "fewshot" else ()

    def render(self, problem: Problem) -> str:
        if self.style == "chat":
            if self.chat_template is None:
                raise ValueError("a chat prompt format needs the tokenizer's chat template")
            if self.prompt is not None and self.prompt.chat_messages is not None:
                return self.chat_template(self.prompt.chat_messages(problem))
            content = self.prompt.chat_user(problem) if self.prompt is not None else user_message(problem, self.instruction)
            return self.chat_template([{"role": "user", "content": content}])
        if self.prompt is not None:
            return self.prompt.text(problem, self.fewshot)
        return fewshot_text(problem, self.instruction, self.fewshot)


def make_prompt_format(model_path: str, style: str, task: Task) -> PromptFormat:
    """Load the tokenizer of ``model_path`` and choose the prompt style (``auto``|``chat``|``fewshot``)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if style == "auto":
        style = "chat" if has_template else "fewshot"
    if style == "chat" and not has_template:
        raise ValueError(f"model.prompt_style is chat but the tokenizer of {model_path} has no chat template")
    if style == "fewshot" and not task.fewshot:
        logger.warning("few-shot prompts requested but task %s has no solved examples: zero-shot text", task.name)
    logger.info("prompt style: %s", style)

    def chat(messages: list[dict[str, Any]]) -> str:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    return PromptFormat(style, task.instruction, list(task.fewshot), chat if style == "chat" else None, task.prompt)
