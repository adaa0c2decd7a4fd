"""Summaries: TL;DRs and theme overviews, how they are stored and reused, the bundled model, the OpenAI-compatible
backend against a real HTTP server on loopback, and clear errors for bad settings."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from chat_server import ChatServer
from conftest import CORPUS
from digest import pipeline
from digest.cli import app
from digest.config import load_config
from digest.errors import SummariserError
from digest.models import Paper, Summary, SummaryClaim, utcnow
from digest.store import open_database, session_scope
from digest.store import summaries as store_summaries
from digest.store import themes as store_themes
from digest.summarise import (
    current_overviews,
    grounding,
    overview_items,
    overview_task,
    summarise_papers,
    write_overview,
)
from digest.summarise.extractive import best_sentences, trim
from digest.summarise.base import SourceItem
from digest.summarise.structured import structured_overview
from digest.summarise.subject import lead_with_subject, method_name
from digest.text import clean_source

THEMES = """
[[themes]]
name = "Image generation"
description = "Diffusion models that create or edit images and video."
keywords = ["diffusion", "text-to-image"]
"""
EXTRACTIVE = '[summariser]\nbackend = "extractive"\n' + THEMES


def corpus(count: int, start: int = 0) -> list[dict]:
    lines = CORPUS.read_text(encoding="utf-8").splitlines()[start : start + count]
    return [json.loads(line) for line in lines]


def add_papers(engine, rows: list[dict]) -> list[Paper]:
    with session_scope(engine) as session:
        papers = [
            Paper(key=f"test:{i}:{row['title'][:40]}", title=row["title"], title_norm=row["title"].lower(),
                  abstract=row["abstract"])
            for i, row in enumerate(rows)
        ]
        session.add_all(papers)
    return papers


def stored(engine, kind: str = "tldr") -> list[Summary]:
    with session_scope(engine) as session:
        return list(session.scalars(select(Summary).where(Summary.kind == kind).order_by(Summary.id)))


@pytest.fixture
def extractive(write_config, engine):
    return load_config(write_config(EXTRACTIVE))


# --- Extractive summaries, storage and reuse --------------------------------------------------------------


def test_extractive_tldr_is_one_trimmed_sentence_of_the_abstract(extractive, engine):
    papers = add_papers(engine, corpus(12))
    report = pipeline.assign_and_summarise(extractive, engine)
    assert report.written == 12 and report.methods == {"extractive": 12}
    by_paper = {s.paper_id: s for s in stored(engine)}
    for paper in papers:
        summary = by_paper[paper.id]
        assert summary.text and len(summary.text.split()) <= 30
        assert summary.text.rstrip(".")[:40] in clean_source(paper.abstract)
        assert (summary.model, summary.backend, summary.prompt_version) == ("extractive", "extractive", store_summaries.EXTRACTIVE_VERSION)
        assert summary.method == "extractive" and summary.grounded and len(summary.source_hash) == 64


def test_trim_cuts_at_a_clause_and_never_mid_word():
    sentence = "We propose a method that, unlike prior work on diffusion, scales to long videos with many characters."
    assert trim(sentence, 10) == "We propose a method that, unlike prior work on diffusion."
    assert trim(sentence, 40) == sentence
    assert best_sentences("Background is hard. We propose X, which outperforms Y. Thanks.", "X", 1) == [
        "We propose X, which outperforms Y."
    ]


@pytest.mark.parametrize(
    ("title", "abstract", "name"),
    [
        ("AnyControl: Create Your Artwork", "We propose AnyControl, a framework.", "AnyControl"),
        ("Music ControlNet: Multiple Time-varying Controls", "We build Music ControlNet.", "Music ControlNet"),
        ("Zero-shot spatial layout conditioning", "We propose ZestGuide, a zero-shot method.", "ZestGuide"),
        ("Sentence embeddings", "We introduce a model called Two-dimensional MSE (2DMSE).", None),
        ("Scan and Snap: Understanding Training Dynamics", "We analyse one-layer transformers.", None),
        ("What's the Magic Word? A Control Theory of Prompting", "We study prompts.", None),
        ("Knowledge Infused Decoding", "We introduce knowledge infused decoding, which helps.", None),
    ],
)
def test_the_method_name_comes_from_the_title_head_or_the_abstract(title, abstract, name):
    assert method_name(title, abstract) == name


@pytest.mark.parametrize(
    ("answer", "name", "rewritten"),
    [
        ("This paper proposes a new video model, SEINE, that makes transitions.", "SEINE",
         "SEINE is a video model that makes transitions."),
        ("This paper proposes AnyControl, a framework that mixes controls.", "AnyControl",
         "AnyControl is a framework that mixes controls."),
        ("This paper demonstrates that prompt-based FT beats pretraining.", None, "Prompt-based FT beats pretraining."),
        ("This paper presents an efficient sampler for diffusion.", None, "An efficient sampler for diffusion."),
        ("This paper examines warm-up strategies and finds that rewarming helps.", None,
         "Examines warm-up strategies and finds that rewarming helps."),
        ("AnyControl is a novel framework.", "AnyControl", "AnyControl is a framework."),
        ("IAPT is a new approach to tuning.", "IAPT", "IAPT is an approach to tuning."),
        ("We propose X, a novel approach that helps.", "X", "We propose X, an approach that helps."),
        ("This paper is about prompts.", None, "This paper is about prompts."),
    ],
)
def test_an_answer_is_rewritten_to_lead_with_its_subject(answer, name, rewritten):
    assert lead_with_subject(answer, name) == rewritten


def test_second_run_makes_nothing_and_force_redoes_everything(extractive, engine):
    add_papers(engine, corpus(5))
    runner = CliRunner()
    first = runner.invoke(app, ["summarise"])
    assert first.exit_code == 0, first.output
    assert "5 papers: 5 summarised (5 extractive), 0 already done" in first.output
    made = {s.id: s.created_at for s in stored(engine)}

    second = runner.invoke(app, ["summarise"])
    assert "5 papers: 0 summarised (none), 5 already done" in second.output
    assert {s.id: s.created_at for s in stored(engine)} == made

    forced = runner.invoke(app, ["summarise", "--force", "--limit", "2"])
    assert "2 papers: 2 summarised (2 extractive), 0 already done" in forced.output
    after = stored(engine)
    assert len(after) == 5 and len(set(s.id for s in after) - set(made)) == 2


def test_summarise_filters_by_theme_and_date(extractive, engine):
    rows = corpus(20)
    add_papers(engine, rows)
    result = CliRunner().invoke(app, ["summarise", "--theme", "Image generation"])
    assert result.exit_code == 0, result.output
    with session_scope(engine) as session:
        in_theme = len(store_themes.theme_candidates(session, "Image generation"))
    assert 0 < in_theme < 20 and f"{in_theme} papers: {in_theme} summarised" in result.output
    assert "0 papers" in CliRunner().invoke(app, ["summarise", "--since", "2999-01-01"]).output
    bad = CliRunner().invoke(app, ["summarise", "--theme", "Nope"])
    assert bad.exit_code == 1 and "no theme named 'Nope'" in bad.output
    assert CliRunner().invoke(app, ["summarise", "--since", "yesterday"]).exit_code == 2


def test_changed_abstract_or_summariser_gets_a_new_summary_and_old_ones_are_kept(write_config, extractive, engine):
    [paper] = add_papers(engine, corpus(1))
    pipeline.assign_and_summarise(extractive, engine)
    with session_scope(engine) as session:
        session.get(Paper, paper.id).abstract = "We propose TinyNet, which halves memory use on phones."
    assert pipeline.assign_and_summarise(extractive, engine).written == 1
    with session_scope(engine) as session:
        assert store_summaries.tldrs_for(session, [paper.id], extractive)[paper.id].text.startswith("We propose TinyNet")
    assert len(stored(engine)) == 2


def test_empty_enormous_and_latex_abstracts_do_not_crash(extractive, engine):
    rows = [
        {"title": "A paper with no abstract", "abstract": ""},
        {"title": "A very long one", "abstract": "We study layouts in depth, and we find more. " * 3000},
        {"title": "LaTeX everywhere", "abstract": r"We reach $\mathbf{95\%}$ accuracy with $\alpha=0.5$ and a $3\times$ speed-up over \textsc{Base}~\cite{b}."},
    ]
    add_papers(engine, rows)
    assert pipeline.assign_and_summarise(extractive, engine).written == 3
    texts = [s.text for s in sorted(stored(engine), key=lambda s: s.paper_id)]
    assert texts[0] == "A paper with no abstract"
    assert len(texts[1].split()) <= 30
    assert "$" not in texts[2] and "\\" not in texts[2] and "95%" in texts[2]


def test_progress_counts_the_tldrs_to_write_not_those_reused(extractive, engine):
    papers = add_papers(engine, corpus(5))
    summarise_papers(extractive, engine, papers[:2])
    calls: list[tuple[int, int]] = []

    report = summarise_papers(extractive, engine, papers, on_progress=lambda done, total: calls.append((done, total)))

    assert (report.reused, report.written) == (2, 3)
    assert calls == [(0, 3), (3, 3)]


def image_overview_task(config, engine, papers: list[Paper]):
    """The overview task of the "Image generation" theme with `papers` as its top papers, best first."""
    with session_scope(engine) as session:
        tldrs = store_summaries.tldrs_for(session, [p.id for p in papers], config)
    return overview_task("Image generation", overview_items(papers, tldrs))


def test_theme_overview_is_structured_from_its_papers_cites_them_and_is_found_again(extractive, engine):
    papers = add_papers(engine, corpus(6))
    pipeline.assign_and_summarise(extractive, engine)
    task = image_overview_task(extractive, engine, papers)

    overview = write_overview(extractive, "Image generation", task)

    assert overview.cited_paper_ids == [p.id for p in papers] and overview.method == "structured"
    assert overview.text.startswith("6 papers") and "New methods: AnyControl, ControlAR" in overview.text
    assert not grounding.repeated_sentences(overview.text, [item.text for item in task.items])
    assert overview.kind == "overview" and overview.subject == "theme:Image generation"
    with session_scope(engine) as session:
        assert current_overviews(session, extractive, {"Image generation": task}) == {}
        store_summaries.save_summary(session, overview)
    other_order = image_overview_task(extractive, engine, papers[1:])
    with session_scope(engine) as session:
        assert current_overviews(session, extractive, {"Image generation": task})["Image generation"].id == overview.id
        assert current_overviews(session, extractive, {"Image generation": other_order}) == {}
    assert other_order.items[0].paper_id == papers[1].id


# --- Bad settings give clear errors ------------------------------------------------------------------------


# The model is what this tests; storing summaries runs on both databases in the tests above and below.
@pytest.mark.only_on("sqlite")
@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ('model = "no-such-org/no-such-model"', "cannot load model 'no-such-org/no-such-model' offline"),
        ('model = "./missing-model"', "does not exist"),
        ('model = "empty-folder"', "holds no config.json or .gguf file"),
        ('dtype = "float8"', "dtype 'float8' is not one of auto, float32, bfloat16, float16"),
        ('device = "cuda:7"', "device 'cuda:7'"),
        ('device = "toaster"', "device 'toaster'"),
        ('backend = "psychic"', "unknown summariser backend 'psychic'"),
    ],
)
def test_bad_model_settings_raise_a_clear_summariser_error(write_config, engine, tmp_path, settings, message):
    (tmp_path / "empty-folder").mkdir()
    config = load_config(write_config(f"[summariser]\n{settings}\n"))
    papers = add_papers(engine, corpus(1))
    with pytest.raises(SummariserError, match=message.replace("(", r"\(").replace(".", r"\.")):
        summarise_papers(config, engine, papers)
    result = CliRunner().invoke(app, ["summarise"])
    assert result.exit_code == 1 and "Error:" in result.output


@pytest.mark.no_database
def test_device_auto_and_the_batch_size_follow_the_machine(write_config):
    import torch

    from digest.summarise.base import backend_class

    def summariser(settings: str):
        config = load_config(write_config(f"[summariser]\n{settings}\n"))
        return backend_class("transformers")(config.summariser, config)

    gpu = torch.cuda.is_available()
    auto = summariser('device = "auto"')
    assert auto.device.type in (("cuda",) if gpu else ("cpu", "mps"))
    assert auto.batch_size == (256 if gpu else 32) and auto.tasks_per_commit == 4 * auto.batch_size
    assert summariser('device = "cpu"\nbatch_size = 8').batch_size == 8


# --- The bundled model -------------------------------------------------------------------------------------


# The model is what this tests; storing summaries runs on both databases in the tests above and below.
@pytest.mark.only_on("sqlite")
def test_bundled_model_summarises_real_abstracts_and_every_summary_is_checked(write_config, engine, model_cache):
    config = load_config(write_config(f'[summariser]\ncache_dir = "{model_cache}"\n' + THEMES))
    rows = [row for row in corpus(40) if row["title"].startswith(("ControlNet++", "SEINE"))]
    papers = add_papers(engine, rows)
    report = summarise_papers(config, engine, papers)
    assert report.written == 2
    summaries = stored(engine)
    abstracts = {paper.id: paper.abstract for paper in papers}
    for summary in summaries:
        assert (summary.model, summary.backend, summary.prompt_version) == ("smollm2", "transformers", store_summaries.TLDR_VERSION)
        assert summary.method in ("model", "model-strict", "extractive")
        found = grounding.problems(summary.text, clean_source(abstracts[summary.paper_id]), max_words=30)
        assert summary.grounded == (not found) and (summary.method == "extractive" or not found)
    assert any(s.method.startswith("model") for s in summaries)
    assert any(p.name.startswith("smollm2-") for p in Path(model_cache).iterdir())
    assert summarise_papers(config, engine, papers).reused == 2
    overview = write_overview(config, "Image generation", image_overview_task(config, engine, papers))
    assert overview.cited_paper_ids == [p.id for p in papers]
    # Which it is depends on the CPU (bf16 or float32 arithmetic); a fallback says why the model's were turned down.
    assert overview.method in ("model", "model-strict") or (
        overview.method == "structured" and [p.split(":")[0] for p in overview.problems] == ["model", "model-strict"])
    assert overview.grounded and 1 <= len(grounding.split_sentences(overview.text)) <= 4


# The model is what this tests; storing summaries runs on both databases in the tests above and below.
@pytest.mark.only_on("sqlite")
def test_a_seq2seq_model_folder_goes_through_the_seq2seq_path(write_config, engine, tmp_path):
    """A tiny, randomly initialised T5 saved to a folder: it loads with the seq2seq class and generates; its
    nonsense fails the grounding check, so the summary falls back to extractive and says why."""
    import torch
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    from digest.themes import embedding_model_folder

    folder = tmp_path / "tiny-t5"
    tokenizer = AutoTokenizer.from_pretrained(embedding_model_folder())  # any real tokenizer will do
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(
        vocab_size=tokenizer.vocab_size, d_model=32, d_ff=64, d_kv=16, num_layers=1, num_heads=2,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    ))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    config = load_config(write_config(f'[summariser]\nmodel = "{folder}"\nmax_new_tokens = 8\n'))
    report = summarise_papers(config, engine, add_papers(engine, corpus(1)))
    [summary] = stored(engine)
    assert report.methods == {"extractive": 1} and summary.model == str(folder)
    assert summary.problems[0].startswith("model: ") and summary.problems[1].startswith("model-strict: ")


def test_a_static_kv_cache_gives_the_answers_the_default_cache_gives():
    """Decoder-only models generate with a static KV cache sized for the batch (the default cache copies itself
    at every token); the answers are the same. Encoder-decoder models keep generate's default."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, StaticCache, T5Config, T5ForConditionalGeneration

    from digest.summarise.huggingface import kv_cache

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=0)).eval()
    prompts_ = torch.tensor([[0, 0, 5, 9, 12], [3, 7, 11, 2, 8]])  # left-padded, as the backend pads
    options = dict(attention_mask=(prompts_ != 0).long(), max_new_tokens=12, do_sample=False, pad_token_id=0)
    with torch.inference_mode():
        default = model.generate(prompts_, **options)
        static = model.generate(prompts_, **options, **kv_cache(model, prompts_.shape[1] + 12))
    assert any(isinstance(option, StaticCache) for option in kv_cache(model, 17).values())
    assert torch.equal(default, static)
    t5 = T5ForConditionalGeneration(T5Config(vocab_size=64, d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2))
    assert kv_cache(t5, 17) == {}


# --- The OpenAI-compatible backend against a real server ---------------------------------------------------


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    with ChatServer() as server:
        yield server


@pytest.fixture
def openai_config(write_config, chat_server, monkeypatch):
    monkeypatch.setenv("TEST_LLM_KEY", "sk-test-123")
    return load_config(write_config(
        f'[summariser]\nbackend = "openai"\nmodel = "tiny-chat"\nbase_url = "{chat_server.url}"\n'
        'api_key_env = "TEST_LLM_KEY"\ntimeout_seconds = 0.5\nconcurrency = 1\n' + THEMES
    ))


def test_openai_backend_summarises_through_a_real_server(openai_config, chat_server, engine):
    papers = add_papers(engine, corpus(3))
    report = summarise_papers(openai_config, engine, papers)
    assert report.methods == {"model": 3}
    assert chat_server.requests[0]["model"] == "tiny-chat" and chat_server.requests[0]["temperature"] == 0
    assert set(chat_server.authorizations) == {"Bearer sk-test-123"}
    for summary in stored(engine):
        assert (summary.model, summary.backend, summary.method, summary.grounded) == ("tiny-chat", "openai", "model", True)


VAGUE = "A video diffusion model that generates smooth transitions between scenes and predicts what comes next."


def test_a_vague_tldr_gives_way_to_the_abstracts_more_specific_sentence(openai_config, chat_server, engine):
    """An answer that passes the grounding check but fits another paper of the run better than its own is
    replaced by the paper's extractive TL;DR, which picks it out; specific answers stay, and nothing is asked
    twice."""
    rows = [corpus(40)[i] for i in (6, 8, 16)]  # SEINE (video diffusion), Prepacking (LLM prefilling), Moto (robots)
    chat_server.scripted[rows[1]["title"]] = [VAGUE]
    papers = add_papers(engine, rows)

    report = summarise_papers(openai_config, engine, papers)

    assert (report.vague, report.replaced_vague, len(chat_server.requests)) == (1, 1, 3)
    summaries = {summary.paper_id: summary for summary in stored(engine)}
    prepacking = summaries[papers[1].id]
    assert prepacking.method == "extractive" and prepacking.grounded and "prefilling" in prepacking.text
    assert prepacking.text.endswith("within Huggingface.")  # cut at 30 words, not after a dangling "across a"
    assert prepacking.problems == ["model: vague (fits another paper of the run better by " +
                                   prepacking.problems[0].rsplit(" ", 1)[1]]
    assert [summaries[p.id].method for p in (papers[0], papers[2])] == ["model", "model"]


def test_near_copies_of_a_paper_do_not_make_its_tldr_vague(openai_config, chat_server, engine):
    """The same abstract under two titles (as a benchmark's repeated records, or a paper and its companion): no
    TL;DR can tell them apart, so neither counts against the other."""
    prepacking, moto = corpus(40)[8], corpus(40)[16]
    papers = add_papers(engine, [prepacking, {**prepacking, "title": prepacking["title"] + " (part 2)"}, moto])
    report = summarise_papers(openai_config, engine, papers)
    assert (report.vague, report.methods) == (0, {"model": 3})


def test_vague_tldrs_stay_when_told_or_when_alone_in_their_run(write_config, chat_server, engine):
    rows = [corpus(40)[i] for i in (6, 8)]
    settings = f'[summariser]\nbackend = "openai"\nmodel = "tiny-chat"\nbase_url = "{chat_server.url}"\n'
    kept = load_config(write_config(settings + "prefer_specific = false\n"))
    papers = add_papers(engine, rows)
    chat_server.scripted = {rows[1]["title"]: [VAGUE, VAGUE]}

    assert summarise_papers(kept, engine, papers).vague == 0
    assert summarise_papers(load_config(write_config(settings)), engine, papers[1:], force=True).vague == 0
    assert {s.text for s in stored(engine) if s.paper_id == papers[1].id} == {VAGUE}


def test_openai_backend_keeps_concurrency_requests_in_flight(write_config, chat_server, engine):
    config = load_config(write_config(
        f'[summariser]\nbackend = "openai"\nmodel = "tiny-chat"\nbase_url = "{chat_server.url}"\nconcurrency = 4\n'))
    chat_server.delay = 0.3
    report = summarise_papers(config, engine, add_papers(engine, corpus(12)))
    assert report.written == 12 and len(chat_server.requests) == 12
    assert chat_server.most_in_flight == 4


def test_two_summarise_workers_split_the_papers_and_write_each_tldr_once(write_config, chat_server, engine):
    """Two `digest summarise` processes at once (two machines with a model each): each claims batches of the
    papers still to do, so together they write every TL;DR, each exactly once (one request per paper)."""
    write_config(f'[summariser]\nbackend = "openai"\nmodel = "tiny-chat"\nbase_url = "{chat_server.url}"\n'
                 'concurrency = 1\ntimeout_seconds = 60\n[assign]\nsimilarity = false\n' + THEMES)
    papers = add_papers(engine, corpus(24))
    chat_server.delay, chat_server.gate = 0.05, 2  # no answer until both workers have a batch in hand
    workers = [subprocess.Popen([sys.executable, "-m", "digest", "summarise"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=os.environ | {"NO_COLOR": "1"})
               for _ in range(2)]
    outputs = [worker.communicate(timeout=180)[0] for worker in workers]

    assert [worker.returncode for worker in workers] == [0, 0], outputs
    written = [int(re.search(r"(\d+) summarised", output).group(1)) for output in outputs]
    assert sum(written) == 24 and min(written) > 0, outputs
    asked = [request["messages"][-1]["content"].split("\n")[0] for request in chat_server.requests]
    assert sorted(asked) == sorted(f"Title: {paper.title}" for paper in papers)
    assert len(stored(engine)) == 24
    with session_scope(engine) as session:
        assert session.scalars(select(SummaryClaim)).all() == []


def test_a_run_asks_for_the_shortest_prompts_first(openai_config, chat_server, engine):
    """Papers are claimed and generated in order of prompt length, so a local model's batches pad little."""
    summarise_papers(openai_config, engine, add_papers(engine, corpus(8)))
    lengths = [len(request["messages"][-1]["content"]) for request in chat_server.requests]
    assert len(lengths) == 8 and lengths == sorted(lengths)


def test_papers_another_worker_holds_are_left_to_it_until_its_claim_expires(extractive, engine):
    papers = add_papers(engine, corpus(3))
    with session_scope(engine) as session:
        store_summaries.claim_papers(session, [papers[0].id, papers[1].id], "elsewhere:1:beef", 10, 1800)
        session.execute(update(SummaryClaim).where(SummaryClaim.paper_id == papers[1].id)
                        .values(claimed_at=utcnow() - timedelta(hours=1)))  # its worker died an hour ago

    report = summarise_papers(extractive, engine, papers)

    assert (report.written, report.elsewhere) == (2, 1)
    assert {summary.paper_id for summary in stored(engine)} == {papers[1].id, papers[2].id}
    with session_scope(engine) as session:
        assert [claim.paper_id for claim in session.scalars(select(SummaryClaim))] == [papers[0].id]


def test_openai_garbage_answers_fall_back_to_extractive(write_config, chat_server, engine):
    """A failed answer is replaced at once by the abstract's own sentence when that picks out its paper; with
    `prefer_specific = false` (or no other paper to tell it from) the model is first asked again, strictly."""
    chat_server.mode = "garbage"
    settings = f'[summariser]\nbackend = "openai"\nmodel = "tiny-chat"\nbase_url = "{chat_server.url}"\n'
    papers = add_papers(engine, corpus(2))

    report = summarise_papers(load_config(write_config(settings)), engine, papers)
    assert report.methods == {"extractive": 2} and len(chat_server.requests) == 2
    assert [s.problems for s in stored(engine)] == [["model: empty"]] * 2 and all(s.grounded for s in stored(engine))

    again = load_config(write_config(settings + "prefer_specific = false\n"))
    assert summarise_papers(again, engine, papers, force=True).methods == {"extractive": 2}
    assert len(chat_server.requests) == 2 + 4  # first try + strict retry each
    assert stored(engine)[-1].problems == ["model: empty", "model-strict: empty"]


@pytest.mark.parametrize(("mode", "message"), [("500", "answered HTTP 500"), ("hang", "did not answer within 0.5 s")])
def test_openai_server_errors_stop_the_run_with_a_clear_error(openai_config, chat_server, engine, mode, message):
    chat_server.mode = mode
    papers = add_papers(engine, corpus(1))
    with pytest.raises(SummariserError, match=message):
        summarise_papers(openai_config, engine, papers)
    assert stored(engine) == []


def test_openai_server_down_is_a_clear_error(write_config, engine):
    config = load_config(write_config('[summariser]\nbackend = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'))
    with pytest.raises(SummariserError, match="cannot reach summariser server http://127.0.0.1:9/v1"):
        summarise_papers(config, engine, add_papers(engine, corpus(1)))


def test_an_interrupted_run_keeps_finished_batches_and_resumes(openai_config, chat_server, engine):
    papers = add_papers(engine, corpus(10))
    chat_server.fail_after = 6  # batches hold 4 papers (concurrency 1 x 4): the second batch fails midway
    with pytest.raises(SummariserError):
        summarise_papers(openai_config, engine, papers)
    assert len(stored(engine)) == 4
    chat_server.fail_after = None
    report = summarise_papers(openai_config, engine, papers)
    assert (report.reused, report.written) == (4, 6) and len(stored(engine)) == 10


def test_themes_tldrs_and_overviews_are_stored_and_reused(write_config):
    config = load_config(write_config(EXTRACTIVE))
    engine = open_database(config.database_url)
    papers = add_papers(engine, corpus(6))
    assert pipeline.assign_and_summarise(config, engine).written == 6
    assert pipeline.assign_and_summarise(config, engine).reused == 6
    with session_scope(engine) as session:
        assert len(store_summaries.tldrs_for(session, [p.id for p in papers], config)) == 6
        assert store_themes.theme_candidates(session, "Image generation")
    overview = write_overview(config, "Image generation", image_overview_task(config, engine, papers))
    assert overview.cited_paper_ids == [p.id for p in papers] and overview.method == "structured"


def test_structured_overview_counts_shared_terms_names_methods_and_the_standout_paper():
    items = (
        SourceItem(1, "AnyControl: Multi-control synthesis", "AnyControl is a framework that conditions Stable Diffusion.",
                   keywords=("diffusion", "ControlNet"), upvotes=12),
        SourceItem(2, "ControlAR: Autoregressive control", "ControlAR adds spatial controls to autoregressive models.",
                   keywords=("ControlNet",), upvotes=159, comments=4),
        SourceItem(3, "Fast samplers for video", "A sampler for Stable Diffusion video models.", keywords=("diffusion",)),
    )
    text = structured_overview(overview_task("Image generation", list(items)))
    assert text == (
        "3 papers: 2 on diffusion and 2 on ControlNet; Stable Diffusion appears in 2. "
        "New methods: AnyControl and ControlAR. Most upvoted: ControlAR (159 upvotes)."
    )
    assert not grounding.repeated_sentences(text, [item.text for item in items])
    assert grounding.repeated_sentences("In short, ControlAR adds spatial controls to autoregressive models.",
                                        [item.text for item in items])
