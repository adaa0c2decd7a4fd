"""The grounding check: invented names, acronyms, numbers and model or dataset names are caught, and so are
empty, repetitive, unfinished or prompt-echoing answers."""

from __future__ import annotations

import pytest

from digest.summarise.grounding import clause_cuts, filler_problems, problems, tidy, unsupported_terms
from digest.text import clean_source, split_sentences

SOURCE = (
    "Text-to-image diffusion models struggle with spatial layouts. We propose LayoutGuide, a training-free method "
    "that steers cross-attention maps of Stable Diffusion v1.5. On the COCO benchmark it improves layout accuracy "
    "by 12.4% over ControlNet while running 2x faster, using 1,000 prompts written by GPT-4."
)


def test_a_faithful_summary_passes():
    summary = "This paper proposes LayoutGuide, a training-free method that steers Stable Diffusion to improve layout accuracy by 12.4% on COCO."
    assert problems(summary, SOURCE, max_words=30) == []


@pytest.mark.parametrize(
    ("summary", "invented"),
    [
        ("This paper proposes LayoutNet, which improves layout accuracy on COCO.", ["LayoutNet"]),
        ("LayoutGuide improves layout accuracy by 15.2% on COCO.", ["15.2"]),
        ("LayoutGuide beats ControlNet on the ImageNet benchmark.", ["ImageNet"]),
        ("LayoutGuide uses prompts written by GPT-3.5 and runs 3x faster.", ["GPT-3.5", "3"]),
        ("LayoutGuide, from Google Research, improves layouts.", ["Google", "Research"]),
        ("The method steers SDXL with a CLIP loss.", ["SDXL", "CLIP"]),
        ("LayoutGuide uses 10,000 prompts.", ["10,000"]),
        ("LayoutGuide uses prompts written by GPT-5.", ["GPT-5"]),
    ],
)
def test_invented_names_and_numbers_are_caught(summary, invented):
    assert unsupported_terms(summary, SOURCE) == invented
    assert any(p.startswith("not in source: ") for p in problems(summary, SOURCE))


def test_names_and_numbers_from_the_source_are_accepted_in_other_forms():
    summary = "LayoutGuide runs 2x faster than ControlNet on 1,000 COCO prompts from GPT-4 with Stable Diffusion models."
    assert unsupported_terms(summary, SOURCE) == []


MODELS = "We fine-tune Llama-7b and Falcon-40b on GPT-4 answers, and compare with LLaMA 2 and the SD-XL base."


@pytest.mark.parametrize(
    ("summary", "invented"),
    [
        ("Llama-40b beats Falcon-40b.", ["Llama-40b"]),  # both parts are in the source, the name is not
        ("Falcon-7b is fine-tuned on GPT-4 answers.", ["Falcon-7b"]),
        ("The method is compared with GPT-4o.", ["GPT-4o"]),  # a longer name holding a real one
        ("They fine-tune Llama-2-7b.", ["Llama-2-7b"]),
        ("They fine-tune Llama-7.", ["Llama-7"]),
    ],
)
def test_a_name_must_appear_whole_not_pieced_together(summary, invented):
    assert unsupported_terms(summary, MODELS) == invented


@pytest.mark.parametrize(
    "summary",
    [
        "They fine-tune Llama-7B and Falcon 40B.",  # other case and separator
        "They fine-tune Llama7b models and LLaMA-2.",  # no separator, or a hyphen for a space
        "GPT-4-based answers help the SD-XL models.",  # a compound ending in plain words needs only its name
        "Answers from GPT-4 tune Falcon-40b's weights.",
    ],
)
def test_a_whole_name_passes_however_it_is_joined(summary):
    assert unsupported_terms(summary, MODELS) == []


@pytest.mark.parametrize(
    ("summary", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("This paper proposes LayoutGuide, a training-free method that steers cross", "unfinished"),
        ("This paper proposes a method that improves layout accuracy and improves layout accuracy and improves it.", "repeats itself"),
        ("TL;DR in one sentence of at most 30 words: LayoutGuide improves layout accuracy.", "echoes the prompt"),
        ("Here is a summary of the abstract you gave me about layouts.", "echoes the prompt"),
    ],
)
def test_bad_shapes_are_rejected(summary, problem):
    found = problems(summary, SOURCE, max_words=30)
    assert any(p.startswith(problem) for p in found), found


def test_too_long_and_too_few_sentences():
    long = "LayoutGuide " + "improves layout accuracy " * 5 + "on COCO, " + " ".join(f"w{i}" for i in range(20)) + "."
    assert any(p.startswith("too long") for p in problems(long, SOURCE + " " + long, max_words=30))
    assert "fewer than 2 sentences" in problems("LayoutGuide improves layouts.", SOURCE, min_sentences=2)


def test_tidy_strips_labels_quotes_and_extra_sentences():
    assert tidy('TL;DR: "LayoutGuide improves layouts. It is fast. It is free."', 1) == "LayoutGuide improves layouts."
    assert tidy("**Summary:** A. B. C. D. E.", 4) == "A. B. C. D."
    assert tidy("These papers do A. They also do B and then", 4) == "These papers do A."
    assert tidy("This paper does A and then", 1) == "This paper does A and then"


def test_sentences_are_not_split_after_abbreviations_or_decimals():
    assert split_sentences("We use e.g. CLIP and v1.5 models. It works.") == ["We use e.g. CLIP and v1.5 models.", "It works."]


def test_latex_and_enormous_sources_are_cleaned():
    assert clean_source(r"We get $\mathbf{95.1\%}$ accuracy, a $3\times$ speed-up over \textsc{Base}~\cite{x}.") == (
        "We get 95.1% accuracy, a 3x speed-up over Base x."
    )
    enormous = "This is a sentence about layouts. " * 2000
    cleaned = clean_source(enormous)
    assert len(cleaned) <= 4000 and cleaned.endswith("layouts.")
    assert clean_source("") == ""


def test_filler_phrases_are_named_and_a_failing_summary_can_be_cut_at_a_clause():
    summary = "LayoutGuide steers Stable Diffusion to follow layouts without training, which is a key finding in the field of AI."
    assert filler_problems(summary) == ["filler ('in the field of')"]
    assert clause_cuts(summary) == ["LayoutGuide steers Stable Diffusion to follow layouts without training."]
    assert clause_cuts("LayoutGuide steers it, which helps.") == []  # too short to stand alone
