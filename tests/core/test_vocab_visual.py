"""The visual vocabulary: its concreteness filter on a planted WordNet, and the shipped file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from insight_desktop.core.concepts.naming import load_vocabulary
from insight_desktop.core.paths import resources_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from build_visual_vocab import concrete_words, hypernym_terms  # noqa: E402
from wordnet_lite import WordNet  # noqa: E402

LEX = {"Tops": 3, "act": 4, "animal": 5, "artifact": 6, "attribute": 7, "group": 14, "location": 15,
       "person": 18, "state": 26, "substance": 27}

# offset, lexname, lemmas (capitalised = a name), hypernym offsets
SYNSETS = [
    ("00000001", "Tops", ["entity"], []),
    ("00000002", "Tops", ["physical_entity"], ["00000001"]),
    ("00000003", "Tops", ["object"], ["00000002"]),
    ("00000004", "Tops", ["whole"], ["00000003"]),
    ("00000005", "artifact", ["artifact"], ["00000004"]),
    ("00000006", "artifact", ["instrumentality"], ["00000005"]),
    ("00000007", "artifact", ["container"], ["00000006"]),
    ("00000008", "artifact", ["vessel"], ["00000007"]),
    ("00000009", "artifact", ["cup"], ["00000008"]),
    ("00000010", "artifact", ["mug"], ["00000008"]),
    ("00000011", "artifact", ["spoon"], ["00000006"]),
    ("00000012", "group", ["church", "Christian_church"], ["00000001"]),
    ("00000013", "artifact", ["church", "church_building"], ["00000005"]),
    ("00000014", "act", ["operating", "operation"], ["00000001"]),
    ("00000015", "person", ["royal", "royal_family_member"], ["00000001"]),
    ("00000016", "state", ["freedom"], ["00000001"]),
    ("00000017", "location", ["Madison", "capital_of_Wisconsin"], ["00000001"]),
    ("00000018", "artifact", ["madison"], ["00000005"]),
    ("00000019", "animal", ["cat", "true_cat"], ["00000004"]),
    ("00000020", "person", ["woman", "adult_female"], ["00000004"]),
    ("00000021", "artifact", ["mouse"], ["00000006"]),
    ("00000022", "attribute", ["ambassador"], ["00000001"]),
    ("00000023", "person", ["relative", "relation"], ["00000004"]),
    ("00000024", "person", ["sister", "sis"], ["00000023"]),
    ("00000025", "Tops", ["substance", "matter"], ["00000002"]),
    ("00000026", "substance", ["compound", "chemical_compound"], ["00000025"]),
    ("00000027", "substance", ["water", "H2O"], ["00000026"]),
    ("00000028", "substance", ["dioxide"], ["00000026"]),
    ("00000029", "artifact", ["website", "web_site"], ["00000005"]),
]
# lemma → (synset offsets most frequent first, noun tag count)
NOUN_INDEX = {
    "entity": (["00000001"], 5), "physical_entity": (["00000002"], 1), "object": (["00000003"], 5),
    "whole": (["00000004"], 3), "artifact": (["00000005"], 3), "instrumentality": (["00000006"], 1),
    "container": (["00000007"], 4), "vessel": (["00000008"], 3), "cup": (["00000009"], 9), "mug": (["00000010"], 2),
    "spoon": (["00000011"], 2), "church": (["00000012", "00000013"], 20), "operating": (["00000014"], 1),
    "royal": (["00000015"], 1), "freedom": (["00000016"], 12), "madison": (["00000017", "00000018"], 2),
    "cat": (["00000019"], 18), "woman": (["00000020"], 40), "mouse": (["00000021"], 3),
    "ambassador": (["00000022"], 4), "relative": (["00000023"], 3), "sister": (["00000024"], 9),
    "substance": (["00000025"], 5), "compound": (["00000026"], 4), "water": (["00000027"], 30),
    "dioxide": (["00000028"], 1), "website": (["00000029"], 1),
}
VERB_TAGS = {"operate": 30, "operating": 20}
ADJ_TAGS = {"royal": 25}


def write_wordnet(folder: Path) -> Path:
    lines = []
    for off, lex, lemmas, hyper in SYNSETS:
        words = " ".join(f"{lem} 0" for lem in lemmas)
        ptrs = " ".join(f"@ {h} n 0000" for h in hyper)
        lines.append(f"{off} {LEX[lex]:02d} n {len(lemmas):02x} {words} {len(hyper):03d} {ptrs} | gloss of {lemmas[0]}")
    (folder / "data.noun").write_text("  1 licence header\n" + "\n".join(lines) + "\n", encoding="latin-1")

    def index(entries: dict[str, tuple[list[str], int]], pos: str) -> str:
        return "".join(f"{lem} {pos} {len(offs)} 0 {len(offs)} {tag} {' '.join(offs)}\n"
                       for lem, (offs, tag) in sorted(entries.items()))
    (folder / "index.noun").write_text(index(NOUN_INDEX, "n"), encoding="latin-1")
    (folder / "index.verb").write_text(index({k: (["90000001"], v) for k, v in VERB_TAGS.items()}, "v"))
    (folder / "index.adj").write_text(index({k: (["80000001"], v) for k, v in ADJ_TAGS.items()}, "a"))
    (folder / "noun.exc").write_text("mice mouse\n", encoding="latin-1")
    return folder


@pytest.fixture()
def wordnet(tmp_path):
    return WordNet(write_wordnet(tmp_path))


def test_concreteness_filter_keeps_things_and_drops_abstract_words(wordnet):
    english = ["operating", "royals", "freedom", "madison", "churches", "spoon", "cats", "women", "mice",
               "ambassadors", "unknownword"]
    kept = concrete_words(wordnet, english)
    # plurals come back singular; "church" is kept for its second sense (the building); people
    # words come from the PEOPLE list only
    assert kept == ["church", "spoon", "cat", "mouse"]


def test_things_no_photo_shows_are_dropped(wordnet):
    import build_visual_vocab

    # kinship (under "relative") and chemicals (under "compound") go; "water" is seen anyway;
    # "website" is an artifact to WordNet but is listed as not seen
    assert concrete_words(wordnet, ["sisters", "dioxide", "water", "website", "spoons"]) == ["water", "spoon"]
    assert "woman" in build_visual_vocab.PEOPLE and "sister" not in build_visual_vocab.PEOPLE


def test_hypernyms_name_parents_below_the_abstract_top(wordnet):
    # "cup" and "mug" (pretend wnids) → their ancestors at depth ≥ 5: vessel (6), container (5)
    terms = hypernym_terms(wordnet, ["n00000009", "n00000010"], common={"vessel", "container"})
    assert sorted(terms) == ["container", "vessel"]
    # an ancestor whose lemma is not a common word is kept only when it covers enough classes
    assert hypernym_terms(wordnet, ["n00000009"], common={"vessel"}) == ["vessel"]


def test_wordnet_relations_link_a_label_to_parents_children_and_siblings(wordnet):
    assert wordnet.related("cup", "vessel") and wordnet.related("vessel", "mug")
    assert wordnet.related("cup", "mug")            # siblings under "vessel"
    assert not wordnet.related("cup", "cat")
    assert not wordnet.related("cup", "nonexistent")


def test_shipped_visual_vocabulary_is_concrete_and_clean():
    path = resources_dir() / "vocab" / "visual.txt"
    assert path.stat().st_size < 1_000_000
    lines = [s for s in path.read_text(encoding="utf-8").splitlines() if s and not s.startswith("#")]
    vocab = load_vocabulary(path)
    assert len(vocab) == len(lines) > 2000               # no duplicates, nothing dropped on load
    terms = set(vocab.terms)
    assert {"feline", "vessel", "container", "red", "wooden", "striped", "beach", "sky", "tabby cat"} <= terms
    assert not {"operating", "royals", "freeing", "ambassadors", "athletes", "churches"} & terms
    # words that named demo concepts but that no photo shows
    assert not {"sister", "son", "chairman", "testosterone", "oxygen", "hydrogen", "penis",
                "liver", "vagina", "corporation"} & terms
    assert {"woman", "soldier", "diver", "water", "oil", "iron", "hand", "beard"} <= terms


def test_bundled_vocabularies_by_name():
    from insight_desktop.core.concepts.vocab import BUNDLED_VOCABULARIES, NamingError, bundled_vocabulary

    visual = bundled_vocabulary("visual")
    assert visual.name == "visual" and "feline" in visual.terms
    assert [bundled_vocabulary(n).name for n in BUNDLED_VOCABULARIES] == list(BUNDLED_VOCABULARIES)
    with pytest.raises(NamingError, match="no bundled vocabulary 'klingon'"):
        bundled_vocabulary("klingon")
