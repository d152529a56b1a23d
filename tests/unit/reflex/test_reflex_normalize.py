"""Normalised views undo obfuscation and still point back into the original text."""

import pytest

from app.reflex.normalize import fold, normalize, words


def original_of(text: str, start: int, end: int) -> str:
    view = normalize(text)
    s, e = view.span(start, end)
    return text[s:e]


def test_ascii_text_is_only_lowercased_and_maps_one_to_one():
    view = fold("Hello World")
    assert view.text == "hello world" and view.origin is None
    assert view.span(6, 11) == (6, 11)


@pytest.mark.parametrize("text, expected", [
    ("Ｉｇｎｏｒｅ", "ignore"),  # fullwidth (NFKC)
    ("𝐢𝐠𝐧𝐨𝐫𝐞", "ignore"),  # mathematical bold (NFKC)
    ("ﬁle", "file"),  # ligature expands to two letters
    ("іgnоrе", "ignore"),  # Cyrillic і, о, е
    ("ig\u200bno\u200dre\ufeff", "ignore"),  # zero-width space, joiner, BOM
    ("ÌGNÓRÉ", "ignore"),  # accents dropped
])
def test_fold_undoes_unicode_disguises(text, expected):
    assert fold(text).text == expected


@pytest.mark.parametrize("text, expected", [
    ("1gn0r3 pr3v10u5", "ignore previous"),
    ("p@$$w0rd", "password"),
    ("i g n o r e", "ignore"),
    ("i.g.n.o.r.e all", "ignore all"),
    ("r u l e s  a n d", "rules  and"),
])
def test_words_undo_leetspeak_and_spaced_letters(text, expected):
    assert normalize(text).text == expected


@pytest.mark.parametrize("text", ["version 10.0.0.1", "costs $15 in 2024", "v2.3.4.5",
                                  "call 555 0134 at 7:30!"])
def test_numbers_without_letters_next_to_them_are_not_leetspeak(text):
    assert normalize(text).text == text.lower()


def test_every_view_position_maps_back_to_the_character_it_came_from():
    text = "Say ｈｉ: i g n o r e \u200bＩＮＳＴＲＵＣＴＩＯＮＳ ﬁnally 7h3 3nd"
    view = normalize(text)

    assert view.text == "say hi: ignore instructions finally the end"
    start = view.text.index("ignore")
    assert original_of(text, start, start + len("ignore")) == "i g n o r e"
    start = view.text.index("instructions")
    assert original_of(text, start, start + len("instructions")) == "ＩＮＳＴＲＵＣＴＩＯＮＳ"
    start = view.text.index("finally")
    assert original_of(text, start, start + len("finally")) == "ﬁnally"
    start = view.text.index("the end")
    assert original_of(text, start, start + 7) == "7h3 3nd"


def test_words_view_composes_with_fold_map():
    text = "ｉ ｇ ｎ ｏ ｒ ｅ"
    view = words(fold(text))
    assert view.text == "ignore"
    assert view.span(0, 6) == (0, len(text))
