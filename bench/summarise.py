"""Summariser benchmark: TL;DRs for abstracts from the shared corpus with the default model and settings, against a
naive baseline, on this machine's CPU or GPU.

    python bench/summarise.py [--end-to-end 136] [--against-previous 0] [--count 200] [--baseline-count 100]
                              [--ablations 0] [--overviews 0] [--variants 0] [--compiled 0]
                              [--device cpu|cuda|auto] [--batch-size N]

On a GPU: `python bench/summarise.py --device cuda --count 1000 --baseline-count 0 --end-to-end 0` (the batch
size defaults to the device's, 256 on a GPU; the corpus is repeated, with new titles, past its 234 records), and
`--count 0 --end-to-end 0 --variants 1000` for the GPU's choices one at a time (`--compiled 256`: generate's own
compiling).

0. End to end, first, in a process that has not loaded torch yet: what `digest summarise` does for `--end-to-end`
   new papers (theme assignment with embeddings, then TL;DRs), timed stage by stage: imports, embedding model
   load, embeddings, the rest of theme assignment, summariser model load, first answers (generation), stricter
   retries, and checks plus storage. Then generation alone: the same papers' first answers in one call, the model
   loaded. Prints both rates and their ratio (target >= 0.8).
   With `--against-previous N`: N new papers summarised by the current path and, in the same process, by the path
   before its batching changes (dynamic KV cache, papers in the order given, failed answers asked again at once,
   batches of 16).

1. Loads the bundled SmolLM2 (converting the GGUF into the user model cache if it is not there yet), then loads it
   again from the warm cache and times that.
2. Summarises `--count` abstracts through the real path (`summarise_papers`: batched generation, grounding check,
   stricter retry, extractive fallback, storage in a fresh SQLite database): abstracts/s, methods, pass rates.
3. Runs the same again: everything is cached, nothing is generated.
4. Baseline: the first `--baseline-count` of the same abstracts one at a time, float32, the whole abstract in the
   prompt, plain `model.generate` (greedy, same max_new_tokens). Prints abstracts/s and the ratio.
5. With `--ablations N`: the first N abstracts through single variants of the generation settings, to show what
   each choice is worth. With `--overviews N`: N theme overviews written from TL;DRs and from abstracts.

The load average is printed at the start and end: the figures are only comparable on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORPUS = ROOT / "tests" / "fixtures" / "corpus" / "papers.jsonl"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from sqlalchemy import select  # noqa: E402

from digest.config import parse_config  # noqa: E402
from digest.models import Paper, Summary  # noqa: E402
from digest.store import open_database, session_scope  # noqa: E402
from digest.summarise import huggingface, prompts  # noqa: E402
from digest.store import summaries as store_summaries  # noqa: E402
from digest.summarise.base import SourceItem  # noqa: E402
from digest.summarise.core import (  # noqa: E402
    OVERVIEW_PAPERS,
    get_summariser,
    overview_task,
    summarise_papers,
    tldr_task,
    write,
)
from digest.text import clean_source  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def corpus_rows(count: int) -> list[dict]:
    """`count` corpus records, the corpus repeated (titles marked as later parts) when it holds fewer."""
    rows = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]
    return [row if n < len(rows) else {**row, "title": f"{row['title']} (part {n // len(rows) + 1})"}
            for n, row in ((n, rows[n % len(rows)]) for n in range(count))]


def store_papers(engine, rows: list[dict]) -> list[Paper]:
    with session_scope(engine) as session:
        papers = [
            Paper(key=f"bench:{i}", title=row["title"], title_norm=row["title"].lower(), abstract=row["abstract"])
            for i, row in enumerate(rows)
        ]
        session.add_all(papers)
    return papers


def timed(action):
    started = time.perf_counter()
    result = action()
    elapsed = time.perf_counter() - started
    return result, elapsed


def model_loads(config) -> tuple[Path, float]:
    """Load once (converting into the cache if it is cold), then time a load from the warm cache; return the
    converted model's folder and the warm load time."""
    cold, first = timed(lambda: huggingface.TransformersSummariser(config.summariser, config).load())
    folder = huggingface.converted_folder(
        huggingface.resolve_source(config.summariser.model, None, config.base_dir),
        cold[1].dtype,
        huggingface.default_cache_dir(),
    )
    summariser = huggingface.TransformersSummariser(config.summariser, config)
    print(f"model: {config.summariser.model} -> {folder} ({cold[1].dtype}, device {cold[1].device}, "
          f"batch size {summariser.batch_size})")
    print(f"first load (converts the GGUF if the cache was cold): {first:.1f} s")
    _, warm = timed(lambda: huggingface.TransformersSummariser(config.summariser, config).load())
    print(f"model load, warm disk cache: {warm:.2f} s  (target < 5 s)")
    return folder, warm


class Baseline:
    """The naive way: one abstract at a time, float32 (the converted model upcast), the whole abstract in the
    prompt, plain `generate` (greedy, same max_new_tokens, no early stop)."""

    def __init__(self, folder: Path, config) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.config = config
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, local_files_only=True).eval()

    def summarise(self, paper: Paper) -> str:
        task = tldr_task(paper, self.config.summariser)
        chat = [{"role": "system", "content": prompts.SYSTEM},
                {"role": "user", "content": f"Title: {task.title}\nAbstract: {task.source}\n\n"
                 f"In one sentence of at most {task.max_words} words, say what the paper does and its main result."}]
        encoded = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with self.torch.inference_mode():
            output = self.model.generate(**encoded, max_new_tokens=self.config.summariser.max_new_tokens, do_sample=False)
        return self.tokenizer.decode(output[0, encoded["input_ids"].shape[1] :], skip_special_tokens=True)


def interleaved_runs(config, engine, papers: list[Paper], folder: Path, baseline_count: int):
    """The default path and the baseline, chunk by chunk (one commit batch each), so that both see the same
    machine load. The baseline model loads after the first chunk, so the peak memory of the default path alone
    can be read then. Returns the summed times, the baseline's count, the merged methods and that peak."""
    step = get_summariser(config).tasks_per_commit
    chunks = [papers[i : i + step] for i in range(0, len(papers), step)]
    spread = {papers[i * len(papers) // baseline_count].id for i in range(baseline_count)} if baseline_count else set()
    main_seconds = base_seconds = 0.0
    base_done = 0
    methods: dict[str, int] = {}
    baseline = peak_default = None
    for chunk in chunks:
        report, elapsed = timed(lambda: summarise_papers(config, engine, chunk))
        main_seconds += elapsed
        for method, n in report.methods.items():
            methods[method] = methods.get(method, 0) + n
        if peak_default is None:
            peak_default = peak_rss_mb()
            baseline = Baseline(folder, config) if baseline_count else None
        sample = [p for p in chunk if p.id in spread]
        _, elapsed = timed(lambda: [baseline.summarise(p) for p in sample])
        base_seconds += elapsed
        base_done += len(sample)
        main_done = sum(methods.values())
        print(f"  so far: default {main_done} in {main_seconds:.0f} s, baseline {base_done} in {base_seconds:.0f} s; "
              f"load average {load_average()}", flush=True)
    return main_seconds, base_seconds, base_done, methods, peak_default


def grounded_tldrs(engine) -> int:
    """Stored TL;DRs that passed the grounding check."""
    with session_scope(engine) as session:
        return sum(session.scalars(select(Summary.grounded).where(Summary.kind == "tldr")))


def report_runs(engine, count: int, main_seconds: float, base_seconds: float, base_count: int, methods: dict) -> None:
    rate = count / main_seconds
    by_model = methods.get("model", 0) + methods.get("model-strict", 0)
    grounded = grounded_tldrs(engine)
    print(f"\nTL;DRs, default settings: {count} abstracts in {main_seconds:.1f} s = {rate:.2f} abstracts/s  (target >= 2.5 on the 2-core CPU, >= 150 on an H100)")
    print(f"  methods: {methods}")
    print(f"  model answers that passed the grounding check (first try or strict retry): {by_model}/{count}")
    print(f"  grounding pass rate after regeneration and fallback: {100 * grounded / count:.1f}%  (target >= 95%)")
    if base_count:
        base_rate = base_count / base_seconds
        scope = "the same abstracts" if base_count == count else f"{base_count} of the {count} abstracts, spread over the run"
        print(f"naive baseline (one at a time, float32, whole abstract, plain generate) on {scope}: "
              f"{base_seconds:.1f} s = {base_rate:.3f} abstracts/s")
        print(f"speed-up over the naive baseline: {rate / base_rate:.1f}x  (target >= 5)")


def second_run(config, engine, papers) -> None:
    report, elapsed = timed(lambda: summarise_papers(config, engine, papers))
    print(f"\nsecond run over the same abstracts: {elapsed:.2f} s, {report.reused} reused, {report.written} generated  (target < 2 s)")


def ablations(config, rows: list[dict], count: int) -> None:
    """Generation only (no grounding, no storage): the default, then one setting changed at a time."""
    variants = [
        ("default (bf16 where supported, batch 32, excerpt prompt, stop at sentence end)", {}),
        ("float32 instead", {"dtype": "float32"}),
        ("batch size 16", {"batch_size": 16}),
        ("batch size 48", {"batch_size": 48}),
    ]
    tasks = [tldr_task(Paper(title=r["title"], abstract=r["abstract"]), config.summariser) for r in rows[:count]]
    print(f"\nablations, generation only, {count} abstracts each:")
    for label, change in variants:
        settings = config.summariser.model_copy(update=change)
        summariser = get_summariser(config.model_copy(update={"summariser": settings}))
        summariser.load()
        _, elapsed = timed(lambda: summariser.summarise(tasks))
        print(f"  {label}: {count / elapsed:.2f} abstracts/s")
    whole = [t.__class__(kind=t.kind, title=t.title, source=t.source, max_words=t.max_words) for t in tasks]
    summariser = get_summariser(config)
    with mock.patch.object(prompts, "EXCERPT_SENTENCES", 1000):  # every sentence: the whole abstract
        _, elapsed = timed(lambda: summariser.summarise(whole))
    print(f"  whole abstract in the prompt instead of the excerpt: {count / elapsed:.2f} abstracts/s")
    static, static_elapsed = timed(lambda: summariser.summarise(tasks))
    with mock.patch.object(huggingface, "kv_cache", default_cache):
        dynamic, elapsed = timed(lambda: summariser.summarise(tasks))
    print(f"  dynamic KV cache instead of a static one: {count / elapsed:.2f} abstracts/s against "
          f"{count / static_elapsed:.2f} for the default just before ({sum(a == b for a, b in zip(static, dynamic))}"
          f"/{count} answers the same)")


def overview_sources(config, engine, papers: list[Paper], groups: int) -> None:
    """Theme overviews of groups of 4 papers, written from their TL;DRs and from their abstracts: how often the
    model's overview passes the check, and how fast each is, written together and one at a time."""
    chunks = [papers[i : i + OVERVIEW_PAPERS] for i in range(0, groups * OVERVIEW_PAPERS, OVERVIEW_PAPERS)]
    with session_scope(engine) as session:
        tldrs = store_summaries.tldrs_for(session, [p.id for chunk in chunks for p in chunk], config)
    summariser = get_summariser(config)
    print(f"\noverviews of {len(chunks)} groups of {OVERVIEW_PAPERS} papers:")
    for label, text_of in (("from TL;DRs", lambda p: tldrs[p.id].text), ("from abstracts", lambda p: clean_source(p.abstract))):
        tasks = [overview_task("Bench", [SourceItem(p.id, p.title, text_of(p)) for p in chunk]) for chunk in chunks]
        written, elapsed = timed(lambda: write(summariser, tasks))
        by_model = sum(w.method != "extractive" for w in written)
        reasons = sorted({p.split(": ", 1)[1].split(" (")[0] for w in written for p in w.problems})
        print(f"  {label}: model overview passed {by_model}/{len(tasks)}, {elapsed / len(tasks):.1f} s each; "
              f"problems seen: {', '.join(reasons) or 'none'}")
        _, one_by_one = timed(lambda: [write(summariser, [task]) for task in tasks])
        print(f"    written together (as an edition's build does): {elapsed:.1f} s; one at a time: {one_by_one:.1f} s "
              f"({one_by_one / elapsed:.1f}x)")


class StageClock:
    """Seconds spent in wrapped functions, by stage (a bench-only way to see inside one real run)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, owner, name: str, stage) -> None:
        """Time every call of `owner.name` under `stage` (a name, or a function of the call's arguments)."""
        original = getattr(owner, name)

        def timed_call(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                key = stage(*args, **kwargs) if callable(stage) else stage
                self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - started

        setattr(owner, name, timed_call)


def end_to_end(rows: list[dict], summariser_settings: dict) -> None:
    """`digest summarise` for new papers, stage by stage, then generation alone on the same papers."""
    import tomllib

    from digest import pipeline, themes
    from digest.demo import DEMO_CONFIG

    clock = StageClock()
    with tempfile.TemporaryDirectory(prefix="digest-bench-") as workdir:
        raw = tomllib.loads(DEMO_CONFIG.format(samples="", backend="transformers", similarity="true"))
        config = parse_config({"database": {"url": f"sqlite:///{workdir}/e2e.db"}, "themes": raw["themes"],
                               "summariser": summariser_settings}, Path(workdir) / "config.toml")
        engine = open_database(config.database_url)
        papers = store_papers(engine, rows)
        summariser = get_summariser(config)
        clock.wrap(themes, "embedding_model", "embedding model load")
        clock.wrap(themes, "embed", "embeddings")
        clock.wrap(pipeline, "assign_themes", "theme assignment")
        clock.wrap(summariser, "load", "summariser model load")
        clock.wrap(summariser, "summarise", lambda tasks, strict=False: "stricter retries" if strict else "first answers")
        started = time.perf_counter()
        import torch  # noqa: F401  (what the command imports on its way: counted here, once)
        import transformers  # noqa: F401

        clock.seconds["imports (torch, transformers)"] = time.perf_counter() - started
        report = pipeline.summarise(config, engine)
        total = time.perf_counter() - started
        seconds = dict(clock.seconds)
        tasks = [tldr_task(p, config.summariser) for p in papers]
        _, alone = timed(lambda: summariser.summarise(tasks))
    seconds["embeddings"] -= seconds.get("embedding model load", 0.0)
    seconds["theme assignment"] -= seconds["embeddings"] + seconds.get("embedding model load", 0.0)
    seconds["summariser model load"] = seconds.get("summariser model load", 0.0)
    seconds["first answers"] -= seconds["summariser model load"]  # the model loads on the first call
    seconds["checks, storage and the rest"] = total - sum(seconds.values())
    count = len(rows)
    print(f"end to end, `digest summarise` for {count} new papers: {total:.1f} s = {count / total:.2f} papers/s; "
          f"methods {report.methods}")
    for stage, spent in seconds.items():
        print(f"  {stage}: {spent:.1f} s ({100 * spent / total:.0f}%)")
    print(f"generation alone (the same {count} first answers in one call, model loaded): {alone:.1f} s = "
          f"{count / alone:.2f} papers/s")
    print(f"end to end / generation alone: {alone / total:.2f}  (target >= 0.8); "
          f"load average {load_average()}\n", flush=True)


def default_cache(model, length: int) -> dict:
    """In place of `huggingface.kv_cache`: no cache argument, so `generate` uses its default, growing cache."""
    return {}


@contextmanager
def previous_path():
    """digest summarise as it was before its batching changes: generate's default (dynamic) KV cache, papers
    claimed in the order given, each batch's failed answers asked again at once, and batches of 16 on a CPU
    (measurement only)."""
    from digest.summarise import core

    take_retries = core.Finisher.take_retries
    with (
        mock.patch.object(huggingface, "kv_cache", default_cache),
        mock.patch.object(core, "by_prompt_length", lambda papers, tasks: papers),
        mock.patch.object(core.Finisher, "take_retries", lambda finisher, at_least=1: take_retries(finisher)),
        mock.patch.object(huggingface, "CPU_BATCH_SIZE", 16),
    ):
        yield


def against_previous_path(rows: list[dict]) -> None:
    """The same new papers summarised by today's path and by the previous one, in one process, each into a fresh
    database (the model and the embedding model loaded once, before either)."""
    from digest.themes import embedding_model

    embedding_model()
    with tempfile.TemporaryDirectory(prefix="digest-bench-") as workdir:
        rates = {label: variant_run(f"{label} path", rows, {}, context, workdir)
                 for label, context in (("current", nullcontext), ("previous", previous_path))}
    print(f"current / previous path: {rates['current'] / rates['previous']:.2f}x faster; "
          f"load average {load_average()}\n", flush=True)


class GenerateLog:
    """Every `generate` call of the run's models: rows, new tokens, seconds in all and in reading the prompt (the
    GPU synchronised), and how busy the GPU was meanwhile (sampled every 0.1 s where NVML answers)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, float]] = []
        self.prefill_seconds = 0.0
        self.busy: list[int] = []
        self.running = False

    @contextmanager
    def recording(self):
        import threading

        import torch
        from transformers.generation.utils import GenerationMixin

        def synchronised(call):
            started = time.perf_counter()
            result = call()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            return result, time.perf_counter() - started

        generate, prefill = GenerationMixin.generate, GenerationMixin._prefill

        def timed_generate(model, *args, **kwargs):
            output, seconds = synchronised(lambda: generate(model, *args, **kwargs))
            rows, prompt = kwargs["input_ids"].shape
            self.calls.append((rows, output.shape[1] - prompt, seconds))
            return output

        def timed_prefill(model, *args, **kwargs):
            outputs, seconds = synchronised(lambda: prefill(model, *args, **kwargs))
            self.prefill_seconds += seconds
            return outputs

        self.calls, self.prefill_seconds, self.busy, self.running = [], 0.0, [], True
        sampler = threading.Thread(target=self.sample, daemon=True)
        sampler.start()
        try:
            with (mock.patch.object(GenerationMixin, "generate", timed_generate),
                  mock.patch.object(GenerationMixin, "_prefill", timed_prefill)):
                yield self
        finally:
            self.running = False
            sampler.join()

    def sample(self) -> None:
        import torch

        while self.running:
            try:
                self.busy.append(torch.cuda.utilization())
            except Exception:  # no GPU or no NVML: no figure
                return
            time.sleep(0.1)

    def summary(self) -> str:
        seconds = sum(s for _, _, s in self.calls)
        steps = sum(n for _, n, _ in self.calls)
        busy = f"{sum(self.busy) / len(self.busy):.0f}%" if self.busy else "n/a"
        decoding = 1000 * (seconds - self.prefill_seconds) / max(steps, 1)
        return (f"generate {seconds:.1f} s in {len(self.calls)} calls (reading prompts {self.prefill_seconds:.1f} s), "
                f"{steps} steps, {decoding:.1f} ms per decoding step; GPU busy {busy}")


def variant_run(label: str, rows: list[dict], settings: dict, context, workdir: str) -> float:
    """`summarise_papers` for `rows` as new papers in a fresh database, with `settings` and `context` applied."""
    import torch

    config = parse_config({"database": {"url": f"sqlite:///{workdir}/{label.replace(' ', '-')}.db"},
                           "summariser": settings}, Path(workdir) / "config.toml")
    engine = open_database(config.database_url)
    papers = store_papers(engine, rows)
    get_summariser(config).load()
    log = GenerateLog()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with context(), log.recording():
        report, seconds = timed(lambda: summarise_papers(config, engine, papers))
    grounded = grounded_tldrs(engine)
    memory = f"; peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if torch.cuda.is_available() else ""
    print(f"  {label}: {len(rows)} in {seconds:.1f} s = {len(rows) / seconds:.2f} abstracts/s; {log.summary()}; "
          f"methods {report.methods}, grounded {100 * grounded / len(rows):.1f}%{memory}", flush=True)
    engine.dispose()
    return len(rows) / seconds


@contextmanager
def embeddings_on_cpu():
    from digest import themes

    themes.embedding_model.cache_clear()
    try:
        with mock.patch.object(themes, "embedding_device", lambda: "cpu"):
            yield
    finally:
        themes.embedding_model.cache_clear()


def compiled_cache(model, length: int, static_cache=huggingface.kv_cache) -> dict:
    """In place of `huggingface.kv_cache`: the static cache with `generate`'s automatic compiling left on."""
    return {name: value for name, value in static_cache(model, length).items() if name != "disable_compile"}


def claims_of_one_batch():
    return mock.patch.object(huggingface.TransformersSummariser, "tasks_per_commit",
                             property(lambda summariser: summariser.batch_size))


def device_variants(rows: list[dict], device: str) -> None:
    """`summarise_papers` end to end (specificity embeddings, checks, fallbacks, storage) for the same new papers
    under one choice changed at a time, in one process; then the fastest choices together."""
    from digest import themes

    base = {"device": device}
    choices = {
        "claims of one batch": claims_of_one_batch,
        "dynamic cache": lambda: mock.patch.object(huggingface, "kv_cache", default_cache),
        "embeddings on the CPU": embeddings_on_cpu,
    }
    themes.embedding_model()
    with tempfile.TemporaryDirectory(prefix="digest-bench-") as workdir:
        variant_run("warm-up", rows[:64], base, nullcontext, workdir)
        rates = {"default": variant_run("default", rows, base, nullcontext, workdir)}
        for size in (512, 1024):
            rates[f"batch {size}"] = variant_run(f"batch {size}", rows, {**base, "batch_size": size}, nullcontext,
                                                 workdir)
        for label, context in choices.items():
            rates[label] = variant_run(label, rows, base, context, workdir)
        default_size = huggingface.default_batch_size(huggingface.resolve_device(device))
        size = max((default_size, 512, 1024), key=lambda n: rates["default" if n == default_size else f"batch {n}"])
        faster = [label for label in choices if rates[label] > rates["default"]]

        @contextmanager
        def combined():
            with ExitStack() as stack:
                for label in faster:
                    stack.enter_context(choices[label]())
                yield

        label = ", ".join([f"batch {size}", *faster])
        variant_run(f"the fastest together ({label})", rows, {**base, "batch_size": size}, combined, workdir)


def compiled_runs(rows: list[dict], device: str) -> None:
    """`summarise_papers` for `rows` with generate's own compiling of the decoding step left on (what the static
    cache did on a GPU before compiling was turned off): cold, then again in the same process."""
    from digest import themes

    themes.embedding_model()
    with tempfile.TemporaryDirectory(prefix="digest-bench-") as workdir:
        for label in ("compiled decoding, cold", "compiled decoding, warm"):
            variant_run(label, rows, {"device": device},
                        lambda: mock.patch.object(huggingface, "kv_cache", compiled_cache), workdir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="abstracts to summarise (default 200; 0: skip)")
    parser.add_argument("--baseline-count", type=int, default=100,
                        help="abstracts for the naive baseline, the first of those summarised (default 100; it runs "
                        "about 5x slower than the default path)")
    parser.add_argument("--ablations", type=int, default=0, help="abstracts per ablation variant (default 0: none)")
    parser.add_argument("--overviews", type=int, default=0,
                        help="groups of 4 papers whose overview is written from TL;DRs and from abstracts (default 0)")
    parser.add_argument("--end-to-end", type=int, default=136,
                        help="new papers for the end-to-end split, run first (default 136; 0: skip)")
    parser.add_argument("--against-previous", type=int, default=0,
                        help="new papers summarised by the current path and by the one before its batching changes "
                        "(static KV cache, shortest prompts first, retries batched, batches of 32 on a CPU), "
                        "in one process (default 0: skip)")
    parser.add_argument("--variants", type=int, default=0,
                        help="new papers summarised end to end under one choice changed at a time (batch size, "
                        "claim size, KV cache, embedding device), then the fastest together (default 0: skip)")
    parser.add_argument("--compiled", type=int, default=0,
                        help="papers summarised with generate's compiling of the decoding step on, cold then warm "
                        "(default 0: skip)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto ([summariser] device)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="texts generated together (default: the device's, 32 on a CPU and 256 on a GPU)")
    args = parser.parse_args()

    if args.end_to_end:
        end_to_end(corpus_rows(args.end_to_end), {"device": args.device, "batch_size": args.batch_size})
    if args.against_previous:
        against_previous_path(corpus_rows(args.against_previous))
    if args.variants:
        device_variants(corpus_rows(args.variants), args.device)
    if args.compiled:
        compiled_runs(corpus_rows(args.compiled), args.device)
    if not args.count:
        return
    import torch

    print(f"load average at start: {load_average()}  (cpus: {os.cpu_count()}, torch threads: {torch.get_num_threads()})")
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        print(f"GPU: {properties.name}, {properties.total_memory / 2**30:.0f} GiB; torch {torch.__version__}")
    rows = corpus_rows(max(args.count, args.baseline_count, args.ablations))
    with tempfile.TemporaryDirectory(prefix="digest-bench-") as workdir:
        config = parse_config({"database": {"url": f"sqlite:///{workdir}/bench.db"},
                               "summariser": {"device": args.device, "batch_size": args.batch_size}},
                              Path(workdir) / "config.toml")
        engine = open_database(config.database_url)
        papers = store_papers(engine, rows[: args.count])
        folder, warm = model_loads(config)
        print("\ndefault path and naive baseline, interleaved chunk by chunk:")
        main_seconds, base_seconds, base_count, methods, peak_default = interleaved_runs(
            config, engine, papers, folder, min(args.baseline_count, args.count)
        )
        report_runs(engine, len(papers), main_seconds, base_seconds, base_count, methods)
        print(f"peak memory (RSS) of the default path: {peak_default:.0f} MB  (target < 2500 MB); "
              f"{peak_rss_mb():.0f} MB with the float32 baseline model loaded too")
        second_run(config, engine, papers)
        if args.ablations:
            ablations(config, rows, args.ablations)
        if args.overviews:
            overview_sources(config, engine, papers, min(args.overviews, len(papers) // OVERVIEW_PAPERS))
    print(f"\npeak memory (RSS) of the whole run: {peak_rss_mb():.0f} MB; warm model load {warm:.2f} s")
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()
