"""The files digest ships beside its code (templates, Alembic migrations, the reference config.toml) and the
optional `ml` extra: where they are, whether it is installed, and what this machine's CPU gives it.

A wheel carries the repository's top-level `templates/`, `migrations/` and `config.toml` inside the package as
`digest/data/` (see pyproject.toml); a checkout or an editable install reads them from the repository itself.
"""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from digest.errors import DigestError

ML_EXTRA_HINT = "pip install 'digest[ml]' (install CPU torch first: see the README)"


@lru_cache(maxsize=8)
def shipped(name: str) -> Path:
    """A file or folder shipped with digest: from the installed package, else from the repository checkout."""
    installed = Path(str(files("digest") / "data" / name))
    if installed.exists():
        return installed
    return Path(str(files("digest"))).parent / name


def templates_dir() -> Path:
    """The bundled templates (`email/`, `markdown/`, `archive/`, `web/`)."""
    return shipped("templates")


def migrations_dir() -> Path:
    """The Alembic script folder (`env.py` and `versions/`)."""
    return shipped("migrations")


def reference_config() -> Path:
    """The commented reference config.toml, which `digest init` copies."""
    return shipped("config.toml")


def missing_packages(modules: tuple[str, ...]) -> list[str]:
    """Those of `modules` (top-level import names) that are not installed, found without importing them."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


def require_ml_extra(purpose: str, modules: tuple[str, ...], error: type[DigestError] = DigestError) -> None:
    """Raise `error`, one line naming the install command, when `purpose` needs `modules` from the `ml` extra
    and some are not installed."""
    missing = missing_packages(modules)
    if missing:
        raise error(f"{purpose} needs the ml extra ({', '.join(missing)} not installed): {ML_EXTRA_HINT}")


@lru_cache
def native_bf16(device: str) -> bool:
    """Whether `device` ("cpu", "cuda", "cuda:1", "mps") has native bfloat16 arithmetic, where bf16 pays off: CUDA
    GPUs that support it, and CPUs with bf16 dot products (AVX512-BF16 or AMX)."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.is_bf16_supported()
    if device != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))
