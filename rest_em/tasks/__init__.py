"""Task registry: a task name -> a builder that turns the ``task:`` config section into a ``Task``.

    task = load_task(cfg.task)                 # train/test problems, instruction, few-shot examples
    transfer = load_transfer(cfg.task)         # held-out problems of another task (or None)

Adding a task (e.g. APPS with ``domain="code"`` and ``payload={"tests": ...}``) is one builder
decorated with ``@register("apps")``; the loop, filter and metrics only see ``Problem`` and
``Task.domain``.
"""

from __future__ import annotations

import random
from typing import Callable

from rest_em.config import ConfigError, TaskSection
from rest_em.tasks import apps, arithmetic, code_embedded, dataset, humaneval, math_data, mbpp, reasoning_gym
from rest_em.tasks.base import Problem, Task, check_unique_ids, select
from rest_em.tasks.code_common import DEFAULT_EXTRACTION, CodeTask, pick_fewshot

__all__ = ["Problem", "Task", "TASKS", "register", "load_task", "load_transfer"]

Builder = Callable[[TaskSection], Task]
TASKS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        TASKS[name] = fn
        return fn

    return deco


def load_task(section: TaskSection) -> Task:
    try:
        builder = TASKS[section.name]
    except KeyError:
        raise ValueError(f"task.name: unknown task {section.name!r}; choose one of {', '.join(sorted(TASKS))}") from None
    task = builder(section)
    if section.extraction is not None and task.domain != "code":
        raise ValueError(f"task.extraction applies to code tasks; task {section.name} is {task.domain} (its answers "
                         "are extracted by the math verifier)")
    check_unique_ids([*task.train, *task.test], f"task {task.name}")
    return task


def load_transfer(section: TaskSection) -> Task | None:
    """The transfer set as a task with an empty train split, or None when ``task.transfer.name`` is unset."""
    tr = section.transfer
    if tr.name is None:
        return None
    spec = TaskSection(name=tr.name, test_path=tr.path, hub_name=tr.hub_name, num_train=0,
                       num_test=tr.num_problems, num_fewshot=section.num_fewshot, seed=section.seed,
                       extraction=section.extraction if tr.name in CODE_TASKS else None)
    return load_task(spec)


@register("arithmetic")
def _arithmetic(s: TaskSection) -> Task:
    levels = s.levels if s.levels is not None else list(arithmetic.LEVELS)
    if s.num_train is None or s.num_test is None:
        raise ValueError("task arithmetic is generated: set task.num_train and task.num_test to numbers")
    train, test, fewshot = arithmetic.generate(s.num_train, s.num_test, s.seed, levels, s.level_weights, s.num_fewshot)
    return Task("arithmetic", "math", train, test, arithmetic.INSTRUCTION, fewshot)


def _dataset_task(dataset: str, s: TaskSection, instruction: str) -> Task:
    test = select(math_data.load_split(dataset, "test", s.test_path, s.hub_name), s.num_test, s.seed, s.levels)
    train: list[Problem] = []
    fewshot: list[Problem] = []
    if s.num_train != 0 or s.num_fewshot:
        pool = select(math_data.load_split(dataset, "train", s.train_path, s.hub_name), None, s.seed, s.levels)
        # Few-shot examples: short solved train problems, held out of the training set.
        short = sorted((p for p in pool if p.solution and len(p.solution) <= 400), key=lambda p: p.problem_id)
        fewshot = random.Random(s.seed).sample(short, min(s.num_fewshot, len(short)))
        held = {p.problem_id for p in fewshot}
        train = select([p for p in pool if p.problem_id not in held], s.num_train, s.seed)
    return Task(dataset, "math", train, test, instruction, fewshot)


@register("math")
def _math(s: TaskSection) -> Task:
    return _dataset_task("math", s, math_data.MATH_INSTRUCTION)


@register("gsm8k")
def _gsm8k(s: TaskSection) -> Task:
    return _dataset_task("gsm8k", s, math_data.GSM8K_INSTRUCTION)


# Code tasks: each builds a ``CodeTask`` whose ``prompt`` is the task's standard prompt text. APPS
# difficulty is ``task.levels``: 1 = introductory, 2 = interview, 3 = competition.
CODE_TASKS = ("code_embedded", "apps", "humaneval", "mbpp")


def _extraction(s: TaskSection) -> str:
    return s.extraction or DEFAULT_EXTRACTION


@register("code_embedded")
def _code_embedded(s: TaskSection) -> Task:
    levels = s.levels if s.levels is not None else list(code_embedded.LEVELS)
    if s.num_train is None or s.num_test is None:
        raise ValueError("task code_embedded is generated: set task.num_train and task.num_test to numbers")
    train, test, fewshot = code_embedded.generate(s.num_train, s.num_test, s.seed, levels, s.level_weights,
                                                  s.num_fewshot, _extraction(s))
    return CodeTask("code_embedded", "code", train, test, code_embedded.INSTRUCTION, fewshot,
                    prompt=code_embedded.PROMPT)


@register("apps")
def _apps(s: TaskSection) -> Task:
    failures: list[str] = []
    test_all, skipped = apps.load_apps("test", s.test_path, s.hub_name, _extraction(s), failures.append)
    test = select(test_all, s.num_test, s.seed, s.levels)
    _check_apps_fallback(s, failures, "test", len(test), s.num_test)
    train: list[Problem] = []
    fewshot: list[Problem] = []
    if s.num_train != 0 or s.num_fewshot:
        failures.clear()
        pool_all, skipped_train = apps.load_apps("train", s.train_path, s.hub_name, _extraction(s), failures.append)
        skipped = skipped + skipped_train
        pool = select(pool_all, None, s.seed, s.levels)
        # Few-shot examples: short solved train problems, held out of the training set.
        fewshot = pick_fewshot(pool, s.num_fewshot, s.seed)
        held = {p.problem_id for p in fewshot}
        train = select([p for p in pool if p.problem_id not in held], s.num_train, s.seed)
        if s.num_train != 0:
            _check_apps_fallback(s, failures, "train", len(train), s.num_train)
    return CodeTask("apps", "code", train, test, apps.INSTRUCTION, fewshot, prompt=apps.PROMPT,
                    skipped=dict(skipped))


def _check_apps_fallback(s: TaskSection, failures: list[str], split: str, got: int, asked: int | None) -> None:
    """A recipe that asked for APPS from the hub and got the small local fallback instead stops here: a
    run on a handful of problems would look like a result on APPS. Asking for a number of problems the
    local files do hold (``task.num_train: 4``) is a choice, and runs."""
    if not failures or (asked is not None and got >= asked):
        return
    levels = f" at levels {s.levels}" if s.levels else ""
    want = "all of them (num_%s: null)" % split if asked is None else f"{asked}"
    raise ConfigError(
        f"task apps: the {split} split asked for {want}{levels} from the hub dataset {s.hub_name!r}, which could not "
        f"be loaded: {failures[0]}. The local fallback ({getattr(s, split + '_path') or 'the default local files'}) "
        f"holds only {got} such problems. Fix: download the APPS release ({apps.APPS_RELEASE}), unpack it and set "
        f"task.train_path=<APPS>/train task.test_path=<APPS>/test task.hub_name=null (the original problem folders "
        f"are read as they are); or, to run on the local files on purpose, set task.hub_name=null or task.num_{split} "
        f"to at most {got}")


@register("humaneval")
def _humaneval(s: TaskSection) -> Task:
    problems = humaneval.load_humaneval(s.test_path or s.train_path, s.hub_name, _extraction(s))
    test = select(problems, s.num_test, s.seed)
    held = {p.problem_id for p in test}
    # One split upstream: a training run trains on the problems left out of the test selection.
    train = select([p for p in problems if p.problem_id not in held], s.num_train, s.seed) if s.num_train != 0 else []
    return CodeTask("humaneval", "code", train, test, humaneval.INSTRUCTION, [], prompt=humaneval.PROMPT)


@register("mbpp")
def _mbpp(s: TaskSection) -> Task:
    splits = mbpp.load_mbpp(s.test_path or s.train_path, s.hub_name, _extraction(s))
    test = select(splits["test"], s.num_test, s.seed)
    train = select(splits["train"], s.num_train, s.seed) if s.num_train != 0 else []
    # Tasks 1-10 are MBPP's few-shot prompt examples: never train or test items.
    return CodeTask("mbpp", "code", train, test, mbpp.INSTRUCTION, splits["fewshot"][: s.num_fewshot],
                    prompt=mbpp.PROMPT)


@register("dataset")
def _dataset(s: TaskSection) -> Task:
    """Your own problems: a file or hub dataset mapped by ``task.fields`` (rest_em/tasks/dataset.py, docs/tasks.md)."""
    return dataset.build(s)


@register("reasoning_gym")
def _reasoning_gym(s: TaskSection) -> Task:
    """A reasoning-gym dataset with one config per level, scored by its own score_answer (rest_em/tasks/reasoning_gym.py)."""
    return reasoning_gym.build(s)
