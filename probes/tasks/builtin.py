"""Built-in tasks, generated here from templates and word lists written for the project (docs/tasks.md).

Each is `make(n, seed) -> TaskSet`: all (template, item) combinations, shuffled with `seed`, the first n
taken (InputError when fewer exist), split train/dev/test with the same seed.
- antonyms (multiple choice, 3 choices): "The opposite of hot is" -> " cold"; the distractors are other
  pairs' words, drawn with the seed.
- sentiment (classification, 2 choices): a one-sentence review -> " positive" / " negative".
- capitals (multiple choice, 3 choices): "The capital of France is" -> " Paris".
- next_day (next token): "If today is Monday, tomorrow is" -> " Tuesday" (and months: "... next month is").
- counting (next token): "one, two, three," -> " four", in words, from several starts.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from probes.errors import InputError
from probes.tasks.format import TaskSet, example_from

ANTONYMS = [("hot", "cold"), ("big", "small"), ("fast", "slow"), ("happy", "sad"), ("light", "dark"),
            ("early", "late"), ("strong", "weak"), ("rich", "poor"), ("young", "old"), ("open", "closed"),
            ("wet", "dry"), ("hard", "soft"), ("high", "low"), ("long", "short"), ("full", "empty"),
            ("clean", "dirty"), ("true", "false"), ("up", "down"), ("left", "right"), ("thick", "thin"),
            ("loud", "quiet"), ("cheap", "expensive"), ("safe", "dangerous"), ("near", "far")]
ANTONYM_TEMPLATES = ["The opposite of {a} is", "The word {a} means the opposite of", "{a} is the opposite of"]

POSITIVE = ["wonderful", "delightful", "brilliant", "excellent", "charming", "moving", "superb", "beautiful",
            "funny", "gripping", "clever", "lovely"]
NEGATIVE = ["terrible", "boring", "awful", "dull", "painful", "clumsy", "dreadful", "tedious", "weak", "messy",
            "pointless", "ugly"]
SENTIMENT_TEMPLATES = ["The film was {w}. The review is", "I found the book {w}. My opinion is",
                       "The meal was {w}. Overall the experience was"]
SENTIMENT_CHOICES = (" positive", " negative")

CAPITALS = [("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
            ("Japan", "Tokyo"), ("Russia", "Moscow"), ("Egypt", "Cairo"), ("Greece", "Athens"),
            ("Austria", "Vienna"), ("Ireland", "Dublin"), ("Norway", "Oslo"), ("Poland", "Warsaw"),
            ("Portugal", "Lisbon"), ("Sweden", "Stockholm"), ("Canada", "Ottawa"), ("Peru", "Lima"),
            ("Kenya", "Nairobi"), ("Cuba", "Havana"), ("Thailand", "Bangkok"), ("Belgium", "Brussels")]
CAPITAL_TEMPLATES = ["The capital of {c} is", "{c}'s capital city is"]

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]


def _records_antonyms(rng: random.Random) -> list[dict[str, Any]]:
    words = [w for pair in ANTONYMS for w in pair]
    out = []
    for template in ANTONYM_TEMPLATES:
        for a, b in ANTONYMS + [(b, a) for a, b in ANTONYMS]:
            others = [w for w in words if w not in (a, b)]
            choices = [f" {b}", *(f" {w}" for w in rng.sample(others, 2))]
            rng.shuffle(choices)
            out.append({"prompt": template.format(a=a), "answer": f" {b}", "choices": choices})
    return out


def _records_sentiment(rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for template in SENTIMENT_TEMPLATES:
        for words, answer in ((POSITIVE, SENTIMENT_CHOICES[0]), (NEGATIVE, SENTIMENT_CHOICES[1])):
            out += [{"prompt": template.format(w=w), "answer": answer, "choices": list(SENTIMENT_CHOICES)}
                    for w in words]
    return out


def _records_capitals(rng: random.Random) -> list[dict[str, Any]]:
    cities = [city for _, city in CAPITALS]
    out = []
    for template in CAPITAL_TEMPLATES:
        for country, city in CAPITALS:
            choices = [f" {city}", *(f" {c}" for c in rng.sample([c for c in cities if c != city], 2))]
            rng.shuffle(choices)
            out.append({"prompt": template.format(c=country), "answer": f" {city}", "choices": choices})
    return out


def _records_next_day(rng: random.Random) -> list[dict[str, Any]]:
    out = [{"prompt": f"If today is {d}, tomorrow is", "answer": f" {DAYS[(i + 1) % 7]}"} for i, d in enumerate(DAYS)]
    out += [{"prompt": f"If this month is {m}, next month is", "answer": f" {MONTHS[(i + 1) % 12]}"}
            for i, m in enumerate(MONTHS)]
    return out


def _records_counting(rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for start in range(len(NUMBERS) - 3):
        for length in (2, 3):
            if start + length < len(NUMBERS):
                words = NUMBERS[start : start + length]
                out.append({"prompt": ", ".join(words) + ",", "answer": f" {NUMBERS[start + length]}"})
    return out


BUILTIN: dict[str, Callable[[random.Random], list[dict[str, Any]]]] = {
    "antonyms": _records_antonyms, "sentiment": _records_sentiment, "capitals": _records_capitals,
    "next_day": _records_next_day, "counting": _records_counting,
}


def builtin_names() -> list[str]:
    return sorted(BUILTIN)


def make_builtin(name: str, n: int | None = None, seed: int = 0) -> TaskSet:
    """The built-in task `name` (module docstring): n examples (default: every one there is), shuffled with `seed`."""
    if name not in BUILTIN:
        raise InputError(f"Unknown task '{name}'. Built-in tasks: {', '.join(builtin_names())}; or give a .jsonl, "
                         ".json or .csv file.")
    rng = random.Random(seed)
    records = BUILTIN[name](rng)
    rng.shuffle(records)
    if n is not None:
        if not 1 <= n <= len(records):
            raise InputError(f"The task {name} has {len(records)} examples; ask for 1 to {len(records)} (got {n}).")
        records = records[:n]
    return TaskSet(name, [example_from(r, f"{name} example {i}") for i, r in enumerate(records, start=1)],
                   seed=seed, source=f"built-in: {name}")


def load_task(name_or_path: str, n: int | None = None, seed: int = 0) -> TaskSet:
    """A built-in task by name, or a task file (.jsonl, .json, .csv; probes/tasks/files.py)."""
    if name_or_path in BUILTIN:
        return make_builtin(name_or_path, n, seed)
    from probes.tasks.files import SUFFIXES, load_task_file

    if not name_or_path.endswith(SUFFIXES):
        return make_builtin(name_or_path, n, seed)  # an unknown name: the message lists the built-ins
    task = load_task_file(name_or_path, seed)
    if n is not None:
        if not 1 <= n <= len(task.examples):
            raise InputError(f"{name_or_path} has {len(task.examples)} examples; ask for 1 to {len(task.examples)}.")
        task = TaskSet(task.name, task.examples[:n], seed=seed, source=task.source)
    return task
