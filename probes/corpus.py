"""Text corpora a fresh machine already has, and a deterministic sampler.

Domains (docs/architecture.md; used by the sink, dormancy and SAE analyses):
- "prose": English paragraphs from Python's own documentation that ships with every CPython
  (`pydoc_data.topics`, the language reference as plain text) and the docstrings of the standard
  library's modules, classes and functions; indented code examples and headings are dropped.
- "code": the standard library's own `.py` source files (tests excluded).
The exact text depends on the Python version; a sample records it with the seed.
"""

from __future__ import annotations

import ast
import random
import re
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from probes.errors import InputError

DOMAINS = ("prose", "code")


@dataclass(frozen=True)
class Document:
    name: str
    text: str


@dataclass
class CorpusSample:
    """n windows of exactly `length_tokens` tokens each, with where they came from."""

    domain: str
    ids: Int[Tensor, "n length"]
    texts: list[str]
    sources: list[str]
    seed: int
    python_version: str

    def to_dict(self) -> dict[str, Any]:
        return {"domain": self.domain, "n": int(self.ids.shape[0]), "length_tokens": int(self.ids.shape[1]),
                "seed": self.seed, "python_version": self.python_version, "sources": self.sources}


def _stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "idlelib", "site-packages", "lib2to3", "tkinter", "turtledemo", "ensurepip"}
    files = [p for p in root.rglob("*.py") if not skip.intersection(p.relative_to(root).parts)]
    return sorted(files)


def _prose_paragraphs(text: str) -> list[str]:
    """Reflow plain-text paragraphs, dropping indented code, headings and short fragments."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = block.splitlines()
        if not lines or any(line.startswith((" ", "\t", ">>>")) for line in lines):
            continue
        if any(set(line.strip()) <= set("*=-~^\"'") for line in lines):
            continue
        joined = " ".join(line.strip() for line in lines)
        letters = sum(c.isalpha() or c.isspace() for c in joined)
        if len(joined) >= 120 and letters / len(joined) > 0.9:
            paragraphs.append(joined)
    return paragraphs


@cache
def documents(domain: str) -> tuple[Document, ...]:
    """The corpus of one domain as documents (deterministic order)."""
    if domain not in DOMAINS:
        raise InputError(f"Unknown corpus domain '{domain}'. Known domains: {', '.join(DOMAINS)}.")
    if domain == "code":
        docs = []
        for path in _stdlib_files():
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            if len(text) > 2000:
                docs.append(Document(name=f"stdlib/{path.name}", text=text))
        return tuple(docs)
    from pydoc_data.topics import topics

    docs = [Document(name=f"pydoc:{key}", text="\n\n".join(_prose_paragraphs(topics[key]))) for key in sorted(topics)]
    for path in _stdlib_files():
        paras = [p for doc in _docstrings(path) for p in _prose_paragraphs(doc)]
        if paras:
            docs.append(Document(name=f"docstrings:{path.name}", text="\n\n".join(paras)))
    return tuple(d for d in docs if len(d.text) > 300)


def _docstrings(path: Path) -> list[str]:
    """Docstrings of a module and of every class and function in it."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
        return []
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return [d for node in ast.walk(tree) if isinstance(node, kinds) and (d := ast.get_docstring(node))]


def _tokenizer_of(tokenizer: Any) -> Any:
    return getattr(tokenizer, "tokenizer", tokenizer)


def sample(
    domain: str, n: int, length_tokens: int, tokenizer: Any, seed: int = 0, prefix_ids: Sequence[int] = ()
) -> CorpusSample:
    """Draw n windows of exactly `length_tokens` tokens from one domain, deterministically.

    Each window comes from a different document while documents last, starting at a random line
    (code) or paragraph (prose) chosen with `seed`. `tokenizer` is an HF tokenizer or a HookedModel.
    `prefix_ids` (e.g. a BOS) are put before each window and count towards its length.
    """
    if n < 1 or length_tokens < 1:
        raise InputError(f"Need n >= 1 and length_tokens >= 1 (got n={n}, length_tokens={length_tokens}).")
    body = length_tokens - len(prefix_ids)
    if body < 1:
        raise InputError("length_tokens must exceed the prefix length.")
    tok = _tokenizer_of(tokenizer)
    docs = list(documents(domain))
    rng = random.Random(f"{domain}:{seed}")
    rows: list[list[int]] = []
    sources: list[str] = []
    order = list(range(len(docs)))
    for attempt in range(4):
        rng.shuffle(order)
        for i in order:
            window = _window(docs[i], body, tok, rng)
            if window is not None:
                rows.append(list(prefix_ids) + window)
                sources.append(docs[i].name)
            if len(rows) == n:
                break
        if len(rows) == n:
            break
        if attempt == 3 or not rows:
            raise InputError(
                f"The {domain} corpus gave only {len(rows)} windows of {length_tokens} tokens; ask for fewer or shorter."
            )
    ids = torch.tensor(rows, dtype=torch.long)
    texts = [tok.decode(r[len(prefix_ids):]) for r in rows]
    return CorpusSample(domain, ids, texts, sources, seed, sys.version.split()[0])


def _window(doc: Document, length: int, tok: Any, rng: random.Random) -> list[int] | None:
    sep = "\n\n" if "\n\n" in doc.text else "\n"
    starts = [0] + [m.end() for m in re.finditer(re.escape(sep), doc.text)]
    start = starts[rng.randrange(len(starts))]
    chunk = doc.text[start : start + length * 12]
    ids = tok(chunk, add_special_tokens=False).input_ids
    if len(ids) < length:
        chunk = doc.text[: length * 12]
        ids = tok(chunk, add_special_tokens=False).input_ids
    return list(ids[:length]) if len(ids) >= length else None
