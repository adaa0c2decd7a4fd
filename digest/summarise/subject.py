"""What a TL;DR is about: the name a paper gives its method (found in its title or abstract), and rewriting an
answer's opening so it leads with that subject ("This paper proposes AnyControl, a framework that ..." becomes
"AnyControl is a framework that ...")."""

from __future__ import annotations

import re

# A title's head ("AnyControl: Create Your Artwork ...") is a name unless it starts like a phrase.
_PHRASE_STARTS = frozenset(
    "a an the towards toward on how what when why do does is are can to in from beyond rethinking revisiting "
    "understanding learning improving scaling making exploring".split()
)
_TITLE_HEAD = re.compile(r"\s*(?::| -- | — )\s*")
# "we propose ZestGuide, ...", "a model called VATT (...)", "... named LIMO which ..."
_INTRODUCED = re.compile(
    r"\b(?:propose|present|introduce|develop|design|build|release|call|called|named|dubbed|termed|coined)\s+"
    r"(?:a |an |the )?(?:new |novel |simple |general |unified |first )?([A-Z][\w+\-]*)"
    r"(?=\s*[,(:.]|\s+(?:which|that|to|as|for)\b)"
)
_OPENING = r"^This (?:paper|work|study|article)\s+"
_FINDING = re.compile(_OPENING + r"(?:shows|demonstrates|finds|argues|reveals|suggests|proves|confirms|concludes)\s+that\s+(?P<rest>.+)$")
_INTRODUCES = re.compile(
    _OPENING + r"(?:proposes|introduces|presents|develops|describes|designs|builds|releases|provides|offers|demonstrates)\s+"
    r"(?P<article>an?|the)\s+(?:(?:new|novel)\s+)?(?P<rest>.+)$"
)
_DOES = re.compile(_OPENING + r"(?P<verb>(?!(?:is|has|was|does)\b)[a-z]{3,}s)\s+(?P<rest>.+)$")
_NEW = re.compile(r"\b(is |, )an? (?:new|novel) (?=(\w))")


def is_name(word: str) -> bool:
    """A word that reads as a name: a capital after the first letter or a digit in one of its hyphenated parts
    (`ControlNet`, `C3Net`, `DePT`, `VL-GPT`)."""
    word = word.strip(",.;:()")
    parts = [p for p in word.split("-") if p]
    return bool(word[:1].isalnum()) and any(any(c.isdigit() for c in p) or any(c.isupper() for c in p[1:]) for p in parts)


def title_name(title: str) -> str | None:
    """The name before a title's colon ("AnyControl", "Music ControlNet"), if the head is one."""
    head, *rest = _TITLE_HEAD.split(title, maxsplit=1)
    head = head.strip()
    found = head.split()
    if not rest or not found or len(found) > 3 or head.endswith("?") or found[0].lower() in _PHRASE_STARTS:
        return None
    if len(found) == 1 and found[0][0].isupper():
        return head
    return head if any(is_name(word) for word in found) else None


def method_name(title: str, abstract: str) -> str | None:
    """The name the paper gives what it proposes: the title's head when the abstract uses it too, else a name
    the abstract introduces ("we propose ZestGuide, ..."), else the title's head. None for papers without one."""
    from_title = title_name(title)
    if from_title and from_title.lower() in abstract.lower():
        return from_title
    for match in _INTRODUCED.finditer(abstract):
        word = match.group(1)
        if is_name(word) or len(word) > 2:
            return word
    return from_title


def lead_with_subject(text: str, name: str | None) -> str:
    """`text` with a "This paper ..." opening rewritten to lead with what the paper is about: its method's
    `name` when it has one, else its finding or the verb ("This paper examines X" -> "Examines X")."""
    return _NEW.sub(lambda m: f"{m.group(1)}{article_for(m.group(2))} ", _rewritten(text, name))


def _rewritten(text: str, name: str | None) -> str:
    if match := _FINDING.match(text):
        return upper_first(match.group("rest"))
    if match := _INTRODUCES.match(text):
        rest = match.group("rest")
        article = "the" if match.group("article") == "the" else article_for(rest)
        if not name:
            return upper_first(f"{article} {rest}")
        # drop the name where the answer gives it in passing: "a video model, SEINE, that" -> "a video model that"
        rest = re.sub(rf"(?:,\s*|\s+(?:called|named|dubbed)\s+){re.escape(name)}(?:\s*\([^)]*\))?(?:,|(?=\s))", "", rest, count=1)
        return f"{name} is {article} {rest}"
    if name and (match := re.match(_OPENING + rf"(?:proposes|introduces|presents|develops)\s+{re.escape(name)}(?:,\s*(?P<article>an?|the)\s+|\s+)(?P<rest>.+)$", text)):
        return f"{name} is {match.group('article')} {match.group('rest')}" if match.group("article") else f"{name} {match.group('rest')}"
    if match := _DOES.match(text):
        return upper_first(match.group("verb")) + " " + match.group("rest")
    return text


def article_for(following: str) -> str:
    """ "a" or "an" by the next word's first sound, as far as its spelling tells ("a unified", "an update")."""
    word = following.lower()
    sounds_like_you = word.startswith(("uni", "use", "usu", "uti", "eu", "one"))
    return "an" if word[:1] in "aeiou" and not sounds_like_you else "a"


def upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]
