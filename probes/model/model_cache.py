"""The conversion cache: each embedded model's GGUF de-quantized once into a plain HF folder.

Spec: docs/methods/embedded-model.md; benchmarks/RESULTS.md. Loading the GGUF costs 14-50 s on two cores
(transformers parses its metadata three times and de-quantizes every tensor); the same weights
saved as safetensors + config + tokenizer load in a few seconds with bit-identical logits.

Where: `$GLASSHOUSE_CACHE/models` if that variable is set (`off`, `0`, `no` or `none` turn the
cache off), else `$XDG_CACHE_HOME/glasshouse/models`, else `~/.cache/glasshouse/models`.
One folder per model, named `<model>-<package version>-<first 12 hex of the GGUF's sha256>`,
holding the HF files and `manifest.json`.

Key and checks, and why:
- The key is the package name and version, the GGUF's SHA-256, and the versions of
  transformers and gguf (the converter) and of this layout (FORMAT). Hashing the GGUF (100-250 MB)
  costs 0.3-0.7 s, so a load first looks for a manifest whose recorded GGUF size and mtime match
  the file; only when none does is the GGUF hashed (and a match found that way has its recorded
  size and mtime updated). The SHA is computed once, at conversion, from the bytes converted.
- Each cached file's size, mtime and SHA-256 are in the manifest. A load checks presence, size
  and mtime (cheap); a file whose mtime moved is hashed and rebuilt if its SHA differs. Hashing
  the 540 MB-1 GB of safetensors on every load would cost 1.5-3 s, a third of the load, so silent
  corruption that keeps size and mtime is caught only by `glasshouse models --verify`
  (`verify(full=True)`), or by the load failing, which also rebuilds.
- A stale entry (another package version or converter version) or a damaged one (missing file,
  unreadable manifest, checksum mismatch) is rebuilt with a warning, never loaded.
- A conversion writes into `.tmp-*` beside the final folder and renames it into place only after
  the files and manifest are written and fsynced and the reloaded folder's logits on a fixed
  prompt equal the GGUF model's (torch.equal); a kill mid-way leaves a `.tmp-*` folder that no
  load reads and the next conversion removes. A per-model lock file keeps two processes from
  converting at once (the second waits, then finds the folder).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probes.errors import cause
from probes.io import atomic_write

log = logging.getLogger("glasshouse.model_cache")

CACHE_ENV = "GLASSHOUSE_CACHE"
OFF_VALUES = {"off", "0", "no", "none", "false", "disabled"}
FORMAT = 1
MANIFEST = "manifest.json"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
CHECK_PROMPTS = ("The days of the week are Monday, Tuesday, Wednesday,", "One, two, three, four,")
TOKENIZER_PROBES = CHECK_PROMPTS + ("  Hello <|im_start|> world\n\n\tx <bos> 42", "é ü 日本 🙂")
# Not add_bos_token: transformers 5 sets it from the GGUF (Gemma: True) but not from a saved folder,
# whose tokenizer.json post-processor prepends the BOS all the same; the ids are what is compared.
TOKENIZER_ATTRS = ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id", "padding_side")

Loader = Callable[[str, str | None], tuple[Any, Any]]
"""(location, gguf_file or None) -> (plain HF model in float32 on CPU, tokenizer), nothing done to them."""

_thread_lock = threading.Lock()


class CacheError(Exception):
    """The cache could not be written or its copy did not match the GGUF (the caller loads the GGUF)."""


def cache_root() -> Path | None:
    """The folder converted models live in, or None when the cache is turned off."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value.lower() in OFF_VALUES:
        return None
    if value:
        return Path(os.path.expanduser(value)) / "models"
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "glasshouse" / "models"


@dataclass(frozen=True)
class Source:
    """What a cached copy is keyed by: the model, its package and version, its GGUF file, the converter."""

    model: str
    package: str
    version: str
    gguf: Path
    converter: tuple[tuple[str, str], ...]

    def stat(self) -> tuple[int, int]:
        st = self.gguf.stat()
        return st.st_size, st.st_mtime_ns


def source_for(model: str, package: str, gguf: Path) -> Source:
    """The key of `model` as installed now (package version from its metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        pkg_version = version(package)
    except PackageNotFoundError:
        pkg_version = "unknown"
    return Source(model, package, pkg_version, Path(gguf), converter_versions())


def converter_versions() -> tuple[tuple[str, str], ...]:
    """Versions of the libraries whose code turns the GGUF into weights and a tokenizer."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in ("transformers", "gguf", "tokenizers"):
        try:
            out.append((name, version(name)))
        except PackageNotFoundError:
            out.append((name, "missing"))
    return tuple(out)


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


# --- looking up --------------------------------------------------------------------------------


def read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _problem(folder: Path, manifest: dict[str, Any] | None, source: Source, full: bool = False) -> str | None:
    """Why `folder` may not be loaded for `source` (None: it may). Updates recorded mtimes of files
    that were touched but whose contents still hash to the manifest's SHA."""
    if manifest is None:
        return "its manifest.json is missing or unreadable"
    if manifest.get("format") != FORMAT:
        return f"it was written in cache format {manifest.get('format')}, this version writes {FORMAT}"
    if (manifest.get("model"), manifest.get("package"), manifest.get("version")) != (
            source.model, source.package, source.version):
        return f"it was converted from {manifest.get('package')} {manifest.get('version')}, not {source.version}"
    if [list(p) for p in source.converter] != manifest.get("converter"):
        return f"it was converted by {manifest.get('converter')}, this environment has {list(source.converter)}"
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(name in files for name in REQUIRED_FILES):
        return "its manifest lists no files or misses a required one"
    touched = False
    for name, rec in files.items():
        path = folder / name
        try:
            st = path.stat()
        except OSError:
            return f"{name} is missing"
        if st.st_size != rec.get("size"):
            return f"{name} has {st.st_size} bytes, the manifest says {rec.get('size')}"
        if full or st.st_mtime_ns != rec.get("mtime_ns"):
            if sha256_file(path) != rec.get("sha256"):
                return f"{name} does not match its checksum"
            if st.st_mtime_ns != rec.get("mtime_ns"):
                rec["mtime_ns"] = st.st_mtime_ns
                touched = True
    if touched:
        _write_manifest(folder, manifest)
    return None


def _candidates(root: Path, source: Source) -> list[Path]:
    if not root.is_dir():
        return []
    prefix = f"{source.model}-"
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(prefix))


def _folder_name(source: Source, sha: str) -> str:
    return f"{source.model}-{source.version}-{sha[:12]}"


def lookup(root: Path, source: Source) -> Path | None:
    """The cached folder for `source`, checked; None if there is none that may be loaded.

    Fast path: a manifest whose recorded GGUF size and mtime equal the file's. Otherwise the GGUF is
    hashed and the folder of that hash used if it checks out. An entry for this model that fails its
    checks is removed, with a warning naming why, so that it is rebuilt.
    """
    size, mtime = source.stat()
    for folder in _candidates(root, source):
        manifest = read_manifest(folder)
        gguf = (manifest or {}).get("gguf", {})
        if gguf.get("size") == size and gguf.get("mtime_ns") == mtime:
            problem = _problem(folder, manifest, source)
            if problem is None:
                return folder
            _discard(folder, problem)
    sha = sha256_file(source.gguf)
    folder = root / _folder_name(source, sha)
    if not folder.is_dir():
        return None
    manifest = read_manifest(folder)
    problem = _problem(folder, manifest, source)
    if problem is None and manifest is not None and manifest.get("gguf", {}).get("sha256") != sha:
        problem = "it was converted from a GGUF with another checksum"
    if problem is not None:
        _discard(folder, problem)
        return None
    assert manifest is not None
    manifest["gguf"].update(size=size, mtime_ns=mtime, path=str(source.gguf))
    _write_manifest(folder, manifest)
    return folder


def _discard(folder: Path, why: str) -> None:
    log.warning("glasshouse: the cached conversion %s cannot be used (%s); rebuilding it.", folder, why)
    _remove(folder)


def _remove(folder: Path) -> None:
    """Rename first, so that a half-removed folder never carries a loadable name."""
    if not folder.exists():
        return
    doomed = folder.with_name(f".del-{folder.name}-{uuid.uuid4().hex[:8]}")
    try:
        folder.rename(doomed)
    except OSError:
        doomed = folder
    shutil.rmtree(doomed, ignore_errors=True)


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    atomic_write(folder / MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=2) + "\n"))


# --- converting --------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(root: Path, model: str) -> Iterator[None]:
    """One converter per model at a time: threads of this process, and other processes (flock)."""
    root.mkdir(parents=True, exist_ok=True)
    with _thread_lock, open(root / f".lock-{model}", "a+") as fh:
        try:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        except (ImportError, OSError):  # no flock (Windows, some network file systems): threads only
            pass
        yield


def ensure(source: Source, loader: Loader, root: Path | None = None) -> Path:
    """The checked cached folder for `source`, converting the GGUF once if there is none.

    Raises CacheError when the cache cannot be written or the converted copy does not reproduce the
    GGUF model's logits; the caller then loads the GGUF itself.
    """
    root = root or cache_root()
    if root is None:
        raise CacheError(f"the conversion cache is off ({CACHE_ENV})")
    try:
        found = lookup(root, source)
        if found is not None:
            return found
        with _locked(root, source.model):
            found = lookup(root, source)  # another process may have converted it meanwhile
            return found if found is not None else _convert(root, source, loader)
    except OSError as exc:
        raise CacheError(f"could not use the cache folder {root} ({cause(exc)})") from exc


def _convert(root: Path, source: Source, loader: Loader) -> Path:
    for stale in root.glob(f".tmp-{source.model}-*"):  # left by a killed conversion (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    log.warning("glasshouse: converting %s once into %s (about 20 s for SmolLM2, 1-2 min for Gemma on two "
                "cores); later loads read the converted copy.", source.model, root)
    started = time.perf_counter()
    sha = sha256_file(source.gguf)
    size, mtime = source.stat()
    tmp = root / f".tmp-{source.model}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        model, tokenizer = loader(str(source.gguf.parent), source.gguf.name)  # its errors are the user's
        try:
            final = _write_checked(root, source, model, tokenizer, tmp, sha, size, mtime, loader, started)
        except CacheError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure to write or re-read the copy: load the GGUF
            raise CacheError(f"converting {source.model} failed ({cause(exc)})") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for other in _candidates(root, source):
        if other != final:
            log.warning("glasshouse: removing %s, an older conversion of %s.", other, source.model)
            _remove(other)
    log.warning("glasshouse: converted %s in %.0f s (%s).", source.model, time.perf_counter() - started, final)
    return final


def _write_checked(root: Path, source: Source, model: Any, tokenizer: Any, tmp: Path, sha: str, size: int,
                   mtime: int, loader: Loader, started: float) -> Path:
    """Save into tmp, check the reloaded copy against the GGUF model, write the manifest, rename."""
    reference = _fingerprint(model, tokenizer)
    save_hf(model, tokenizer, tmp)
    del model
    reloaded, reloaded_tok = loader(str(tmp), None)
    problem = _compare(reference, _fingerprint(reloaded, reloaded_tok))
    del reloaded
    if problem:
        raise CacheError(f"the converted copy of {source.model} differs from the GGUF model: {problem}")
    files = {}
    for path in sorted(p for p in tmp.iterdir() if p.is_file()):
        _fsync(path)
        st = path.stat()
        files[path.name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256_file(path)}
    manifest = {
        "format": FORMAT, "model": source.model, "package": source.package, "version": source.version,
        "converter": [list(p) for p in source.converter],
        "gguf": {"path": str(source.gguf), "size": size, "mtime_ns": mtime, "sha256": sha},
        "files": files,
        "check": {"prompts": list(CHECK_PROMPTS), "logits_sha256": reference["logits_sha256"],
                  "equal_to_gguf": True},
        "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "conversion_s": round(time.perf_counter() - started, 1),
    }
    _write_manifest(tmp, manifest)
    _fsync(tmp)
    final = root / _folder_name(source, sha)
    _remove(final)  # an entry that failed its checks (lookup already warned)
    os.rename(tmp, final)
    _fsync(root)
    return final


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_hf(model: Any, tokenizer: Any, folder: Path) -> None:
    """Save a GGUF-loaded (already de-quantized) model and its tokenizer as a plain HF folder."""
    # transformers marks a GGUF-loaded model as quantized and refuses to save it; its weights are
    # plain float tensors by now (the de-quantizing load), so the mark is dropped for the save.
    quantizer = getattr(model, "hf_quantizer", None)
    quant_config = getattr(model.config, "quantization_config", None)
    model.hf_quantizer = None
    if quant_config is not None:
        del model.config.quantization_config
    try:
        folder.mkdir(parents=True)
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
    finally:
        model.hf_quantizer = quantizer
        if quant_config is not None:
            model.config.quantization_config = quant_config


def _fingerprint(model: Any, tokenizer: Any) -> dict[str, Any]:
    """What must be equal between the GGUF model and its converted copy."""
    import torch

    ids = [list(tokenizer(text).input_ids) for text in TOKENIZER_PROBES]
    with torch.no_grad():
        logits = [model(torch.tensor([row])).logits for row in ids[: len(CHECK_PROMPTS)]]
    digest = hashlib.sha256()
    for t in logits:
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return {"ids": ids, "logits": logits, "logits_sha256": digest.hexdigest(),
            "tokenizer": {a: getattr(tokenizer, a, None) for a in TOKENIZER_ATTRS} | {"len": len(tokenizer)},
            "params": sum(p.numel() for p in model.parameters())}


def _compare(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    import torch

    if a["ids"] != b["ids"]:
        return "the tokenizers give other ids"
    if a["tokenizer"] != b["tokenizer"]:
        return f"tokenizer settings {a['tokenizer']} != {b['tokenizer']}"
    if a["params"] != b["params"]:
        return f"{a['params']} parameters != {b['params']}"
    for x, y in zip(a["logits"], b["logits"], strict=True):
        if not torch.equal(x, y):
            return f"logits differ by up to {float((x - y).abs().max()):.3g}"
    return None


# --- listing -----------------------------------------------------------------------------------


def entries(root: Path | None = None, full: bool = False) -> list[dict[str, Any]]:
    """What is cached: one row per folder (model, version, size in bytes, status, path).

    status: 'ok', or why a load would rebuild it. Checks sizes and mtimes (hashing only files whose
    mtime moved); full=True hashes every file against the manifest (`glasshouse models --verify`).
    No GGUF is located or hashed, so a copy of an outdated GGUF shows 'ok' until a load replaces it.
    """
    root = root or cache_root()
    if root is None or not root.is_dir():
        return []
    rows = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        manifest = read_manifest(folder)
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        row: dict[str, Any] = {"model": (manifest or {}).get("model", folder.name), "folder": str(folder),
                               "bytes": size, "version": (manifest or {}).get("version")}
        if manifest is None:
            row["status"] = "no manifest (incomplete or damaged)"
        else:
            source = Source(manifest.get("model", ""), manifest.get("package", ""), _installed(manifest),
                            Path(manifest.get("gguf", {}).get("path", "")), converter_versions())
            row["status"] = _status(folder, manifest, source, full)
            row["converted_at"] = manifest.get("converted_at")
        rows.append(row)
    return rows


def _installed(manifest: dict[str, Any]) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(str(manifest.get("package", "")))
    except (PackageNotFoundError, ValueError):
        return "not installed"


def _status(folder: Path, manifest: dict[str, Any], source: Source, full: bool) -> str:
    if source.version == "not installed":
        return f"stale: its package {manifest.get('package')} is not installed"
    problem = _problem(folder, manifest, source, full=full)
    return "ok" if problem is None else f"stale or damaged: {problem}"


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def remove_entry(folder: Path) -> None:
    """Delete one cached folder (renamed first, so it is never half-present under its name)."""
    _remove(folder)
