"""Each filter on texts built to trip exactly one of its rules, and the PII formatter on tricky cases."""

from gristmill.conf.schema import C4Config, FineWebConfig, PIIConfig, RepetitionConfig
from gristmill.tasks.clean.base import Doc, split_words
from gristmill.tasks.clean.blocklist import BadWords, DomainBlocklist
from gristmill.tasks.clean.c4 import C4Quality
from gristmill.tasks.clean.fineweb import FineWebQuality
from gristmill.tasks.clean.pii import PIIFormatter
from gristmill.tasks.clean.repetition import GopherRepetition, duplicated_ngram_chars, top_ngram_chars
from tests.tasks.clean.test_clean import PROSE

SENTENCES = [
    "The river rose quickly after three days of heavy rain in the hills.",
    "Farmers moved their animals to higher ground before the water arrived.",
    "Volunteers filled sandbags outside the town hall until late at night.",
    "By morning the main bridge was closed and the school had shut its doors.",
    "Engineers said the old embankment held better than anyone had expected.",
    "The mayor thanked the crews and promised a review of the flood defences.",
]
ARTICLE = "\n".join(SENTENCES)


def rule(filter_, text, url=""):
    verdict = filter_.check(Doc(text, url))
    return verdict and verdict.rule


def test_words_split_like_spacy_punctuation_at_the_edges_only():
    assert split_words('foo(bar) = "hi", e-mail 3.14...') == [
        "foo(bar", ")", "=", '"', "hi", '"', ",", "e", "-", "mail", "3.14", "...",
    ]  # fmt: skip


def test_repetition_rules_measure_duplicates_and_ngrams():
    rep = GopherRepetition(RepetitionConfig())
    assert rule(rep, ARTICLE) is None
    assert rule(rep, "\n\n".join(SENTENCES[:3] + SENTENCES[:2])) == "gopher_rep_dup_para_frac"
    assert rule(rep, "\n".join(SENTENCES + ["Read more"] * 5)) == "gopher_rep_dup_line_frac"  # 4 of 11 lines
    assert rule(rep, ARTICLE + " wonderful offers" * 10) == "gopher_rep_top_2_gram"
    words = ["a", "b", "c", "d", "e", "a", "b", "c", "d", "e", "x"]
    assert top_ngram_chars(words, 2) == 3 * 2  # "a b" twice
    assert duplicated_ngram_chars(words, 5) == len("abcde")  # the second copy, counted once, without spaces


def test_c4_drops_bad_lines_and_keeps_the_rest():
    c4 = C4Quality(C4Config())
    doc = Doc(ARTICLE + "\nPlease enable JavaScript to view this page.\nRead our privacy policy here.\nShare\n")
    assert c4.check(doc) is None
    assert doc.text == ARTICLE
    assert (c4.stats["lines_javascript"], c4.stats["lines_policy"], c4.stats["lines_few_words"]) == (1, 1, 1)
    cited = Doc(ARTICLE.replace("hills.", "hills.[12]"))
    assert c4.check(cited) is None and "[12]" not in cited.text


def test_c4_document_rules_and_the_optional_terminal_punctuation_rule():
    c4 = C4Quality(C4Config())
    assert rule(c4, ARTICLE + "\nLorem ipsum dolor sit amet.") == "c4_lorem_ipsum"
    assert rule(c4, ARTICLE + "\nfunction f() { return 1; }") == "c4_curly_bracket"
    assert rule(c4, "\n".join(SENTENCES[:4])) == "c4_too_few_sentences"
    untidy = ARTICLE.replace(".", "")
    assert rule(c4, untidy) is None  # off by default, as in FineWeb
    assert rule(C4Quality(C4Config(filter_no_terminal_punct=True)), untidy) == "c4_too_few_sentences"


def test_fineweb_rules():
    fw = FineWebQuality(FineWebConfig())
    assert rule(fw, ARTICLE) is None
    assert rule(fw, ARTICLE.replace(".", "")) == "fineweb_line_punct_ratio"
    assert rule(fw, ARTICLE + "\n" + "\n".join(f"Menu item {i}." for i in range(20))) == "fineweb_short_line_ratio"
    assert rule(fw, ARTICLE + "\n" + SENTENCES[0]) == "fineweb_char_dup_ratio"
    # long lines (so not "short") of one word each: 2 tokens per newline
    listing = ARTICLE + "\n" + "\n".join(f"Incomprehensibilities{i}notwithstanding." for i in range(60))
    assert rule(fw, listing) == "fineweb_list_ratio"


def test_pii_redacts_public_addresses_and_leaves_lookalikes():
    pii = PIIFormatter(PIIConfig())
    text = (
        "Mail jane.doe@example.org or call +44 20 7946 0958 or (555) 123-4567. Server 8.8.8.8, "
        "IPv6 2001:4860:4860::8888. Keep: version 1.2.3.4.5, tag v10.0.0.1, LAN 192.168.1.10, loopback 127.0.0.1, "
        "::1, a decorator @property, matrix a@b, years 2021-2022, time 12:30:45, build 10.0.19041.1."
    )
    out = pii.format(text)
    assert out.startswith("Mail <EMAIL> or call <PHONE> or <PHONE>. Server <IP_ADDRESS>, IPv6 <IP_ADDRESS>.")
    for kept in ("1.2.3.4.5", "v10.0.0.1", "192.168.1.10", "127.0.0.1", "::1", "@property", "a@b", "2021-2022",
                 "12:30:45", "10.0.19041.1"):  # fmt: skip
        assert kept in out, kept
    assert dict(pii.stats) == {"email": 1, "ip": 2, "phone": 2}
    assert PIIFormatter(PIIConfig(ips=False)).format("at 8.8.8.8") == "at 8.8.8.8"


def test_email_in_code_is_redacted_but_code_is_not():
    out = PIIFormatter(PIIConfig()).format('git config user.email "dev@corp.example.com"\n@dataclass\nx = y@z.T')
    assert out == 'git config user.email "<EMAIL>"\n@dataclass\nx = y@z.T'


def test_blocklists_from_config():
    block = DomainBlocklist(["spam.example", "www.bad.test"])
    assert rule(block, PROSE, "https://a.spam.example/page") == "url_blocklist"
    assert rule(block, PROSE, "https://bad.test/") == "url_blocklist"
    assert rule(block, PROSE, "https://notspam.example/") is None
    words = BadWords(["darn", "heck"])
    assert rule(words, PROSE + " Oh heck.") == "badwords"
    assert rule(words, PROSE + " Checking.") is None
