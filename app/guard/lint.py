"""Content lint: does a campaign's content look like test content?

The environment guard (SPEC §3, rule 2) refuses a live campaign in production when this lint
returns any finding, unless an operator overrides it with a written reason. It exists because a
bank once sent "ęśąćż" / "test wiadomości push" to every customer at once.

Contract:

* Pure and deterministic: no I/O, no clock, no randomness. The same input always gives the same
  findings in the same order (fields in the caller's order, then by position in the text).
* Every finding's ``match`` is an exact substring of the original text of ``fields[finding.field]``
  even though matching itself is case- and diacritics-insensitive: matching runs on a folded copy
  of the text that remembers where each folded character came from.
* A finding explained by a wider finding of another rule in the same field is dropped ("[TEST]"
  is one test marker, not also a placeholder word), so each fragment is explained once.
* The lint errs towards flagging: a false positive costs an operator one written override, a false
  negative costs the incident above. The deliberate exceptions are words that are everyday
  vocabulary in some language ("bar", Spanish "todo", "prueba gratis", "próba logowania",
  "nie wysyłaj nikomu kodu"), which are only flagged in the contexts where they mean "test".
* Disguises read as what they imitate. Word rules look at two foldings of each field (see
  ``app.guard.confusables``): one that keeps each script, so "тест" meets the Russian word list,
  and a Latin skeleton where Cyrillic, Greek and other look-alike letters and leetspeak digits
  become the Latin letter they imitate, so "tеst" (Cyrillic е), "ТЕЅТ", "t3st" and "7est" meet
  the English one. Spaced-out spellings ("t e s t", "t.e.s.t") and "test" glued to a partner
  word ("testpush", "pushtest") count too; "contest", "latest", "protest", "attest" and
  "testament" are different words, not disguises.

When "test" is ordinary copy. A test word is flagged when it labels the message itself (a noun or
adjective: "test", "testy", "testowa wiadomość", "push testowy") or reports the sender at work in
the first person ("testuję", "testujemy", "sprawdzam"). Three kinds of real copy pass:

* words that merely contain the letters: "contest", "latest", "protest", "attest", "testament",
  "testimony" (whole-word matching; the joined forms above are an explicit list of partners);
* idioms where the word cannot mean "this message is a test": "test-drive" / "test drive" (try
  a product), "put it to the test", "okres testowy" (trial period), "jazda testowa", "A/B test"
  (the experiment a real campaign belongs to, as in "?utm_content=ab_test_b"), like the older
  "próba logowania", "jazda próbna", "okres próbny";
* Polish second-person invitations, which are their own word forms: "Przetestuj nową kartę",
  "Testuj za darmo przez 30 dni", "Wypróbuj". Testers label pushes with the noun, the
  adjective or the first person ("test", "testowa", "testuję"), never by inviting the reader,
  so these verbs are simply absent from the word lists.

The English imperative is the deliberate exception to the last rule: "Test your knowledge with
our quiz" is real marketing copy and is still flagged, because the imperative is spelled exactly
like the label ("Test your push", "Test: your offer", "Test your card 2") and no word list can
tell them apart reliably. A quiz campaign costs one written override, which is the case the
override binding was built around; a missed "Test ..." push costs the incident above.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from app.guard.confusables import CONFUSABLES, fold_char, is_mark, latin_char, unleet

__all__ = ["LintCode", "LintFinding", "lint_content", "lint_title_body"]


class LintCode(StrEnum):
    """Stable machine codes; API clients and the audit log key on these, so never rename one."""

    TEST_MARKER = "test_marker"
    DO_NOT_SEND = "do_not_send"
    TEST_LINK = "test_link"
    LOREM_IPSUM = "lorem_ipsum"
    TEMPLATE_VARIABLE = "template_variable"
    PLACEHOLDER_WORD = "placeholder_word"
    DIACRITICS_ONLY = "diacritics_only"
    KEYBOARD_MASH = "keyboard_mash"
    REPEATED_CHARACTER = "repeated_character"
    TOO_SHORT = "too_short"
    IDENTICAL_TITLE_BODY = "identical_title_body"


class LintFinding(BaseModel):
    """One reason why content looks like test content."""

    model_config = ConfigDict(frozen=True)

    code: str
    field: str
    match: str
    message: str


# Declaration order is the tie-break when two rules explain exactly the same fragment: the more
# specific explanation ("[TEST]" is a marker) wins over the more general one ("test" is a word).
_PRIORITY: dict[LintCode, int] = {code: rank for rank, code in enumerate(LintCode)}

# Whole-field observations describe a different dimension from fragment rules, so they neither
# hide nor get hidden by fragment findings ("test" / "test" is both identical and a test word).
_NON_SUPPRESSING = frozenset({LintCode.TOO_SHORT, LintCode.IDENTICAL_TITLE_BODY})


@dataclass(frozen=True, slots=True)
class _Hit:
    start: int
    end: int
    code: LintCode
    message: str


# ---------------------------------------------------------------------------------------------
# Folding: case- and diacritics-insensitive matching that still reports the original fragment.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Folded:
    original: str
    text: str
    # origin[i] is the index in `original` of the character that produced folded character i.
    origin: tuple[int, ...]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Map a non-empty folded span back to the original text."""
        o_start = self.origin[start]
        o_end = self.origin[end - 1] + 1
        # Characters that fold to nothing (combining marks, zero-width characters) belong to the
        # fragment they follow, otherwise "testé" decomposed would report a bare "teste".
        while o_end < len(self.original) and fold_char(self.original[o_end]) == "":
            o_end += 1
        return o_start, o_end


def _fold(text: str, *, latin: bool = False) -> _Folded:
    fold = latin_char if latin else fold_char
    parts: list[str] = []
    origin: list[int] = []
    for index, ch in enumerate(text):
        folded = fold(ch)
        parts.append(folded)
        origin.extend([index] * len(folded))
    joined = "".join(parts)
    # unleet keeps the length, so the origin map stays valid.
    return _Folded(original=text, text=unleet(joined) if latin else joined, origin=tuple(origin))


@dataclass(frozen=True, slots=True)
class _Text:
    """A field's text, folded two ways.

    ``plain`` keeps each script, so "тест" meets the Russian word list; ``latin`` reads look-alike
    letters and leetspeak as the Latin letters they imitate, so "tеst" (Cyrillic е) and "t3st"
    meet the English one. Word rules look at both; a fragment found in both is reported once.
    """

    plain: _Folded
    latin: _Folded

    @property
    def original(self) -> str:
        return self.plain.original

    @property
    def views(self) -> tuple[_Folded, ...]:
        if self.latin.text == self.plain.text:
            return (self.plain,)
        return (self.plain, self.latin)


def _read(text: str) -> _Text:
    return _Text(plain=_fold(text), latin=_fold(text, latin=True))


def _fold_phrase(phrase: str) -> str:
    return "".join(fold_char(ch) for ch in phrase)


# Word boundaries are "not next to a letter" rather than \b, so "test1", "test_push" and
# "foo-bar" still expose their words while "contest", "testimony" and "Bartek" do not.
_NOT_AFTER_LETTER = r"(?<![^\W\d_])"
_NOT_BEFORE_LETTER = r"(?![^\W\d_])"
_WORD_SEPARATOR = r"[\s_\-]+"
_APOSTROPHE = r"['\u2019\u02bc`]?\s*"


def _phrase_pattern(phrase: str) -> str:
    out: list[str] = []
    for ch in _fold_phrase(phrase):
        if ch == " ":
            out.append(_WORD_SEPARATOR)
        elif ch in "'\u2019":
            out.append(_APOSTROPHE)
        else:
            out.append(re.escape(ch))
    return "".join(out)


def _alternation(phrases: Iterable[str]) -> str:
    # Longest first, so a phrase ("test message") wins over the word it starts with ("test").
    patterns = sorted({_phrase_pattern(p) for p in phrases}, key=lambda p: (-len(p), p))
    return "(?:" + "|".join(patterns) + ")"


def _whole_words(phrases: Iterable[str], *, digits_suffix: bool = True) -> re.Pattern[str]:
    # Test content is often numbered ("test1", "test 2" is caught as "test"), so trailing digits
    # are part of the fragment.
    suffix = r"\d*" if digits_suffix else ""
    return re.compile(_NOT_AFTER_LETTER + _alternation(phrases) + suffix + _NOT_BEFORE_LETTER)


def _quote(fragment: str) -> str:
    shown = " ".join(fragment.split())
    if len(shown) > 60:
        shown = shown[:57] + "…"
    return f'"{shown}"'


# ---------------------------------------------------------------------------------------------
# Field kinds
# ---------------------------------------------------------------------------------------------

_MACHINE_LEAVES = frozenset({"deep_link", "url", "link", "image", "image_url"})
_MESSAGE_LEAVES = frozenset({"title", "subtitle", "body"})


def _leaf(path: str) -> str:
    return path.rsplit(".", 1)[-1]


def _is_machine_field(path: str) -> bool:
    """Data values and links are identifiers and URLs, not prose: ids like "123456" are fine."""
    return path == "data" or path.startswith("data.") or _leaf(path) in _MACHINE_LEAVES


def _is_message_field(path: str) -> bool:
    return not _is_machine_field(path) and _leaf(path) in _MESSAGE_LEAVES


def _has_lowercase(text: str) -> bool:
    return any(ch.islower() for ch in text)


# ---------------------------------------------------------------------------------------------
# Word lists
# ---------------------------------------------------------------------------------------------

# Words and phrases whose only meaning in a notification is "this is a test". Inflected forms are
# listed explicitly instead of stemmed so that "testimony" or "Testsieger" can never match.
_TEST_WORDS = (
    # English; "tests" and "testing" are what load and smoke tests are labelled with
    "test", "tests", "testing", "tester", "testtest", "test message", "test push",
    "test notification", "this is a test", "just testing", "tst", "tset", "tets",
    "qa", "uat", "staging", "qa only", "dev only", "for qa", "does this work", "did this work",
    "is this working", "did you get this", "can you see this", "do you see this",
    "checking if this works", "checking if it works", "checking if push works",
    "checking if the push works",
    # Polish: every form of the noun, the adjective and the first-person verb ("I am testing",
    # "we are testing"). The second-person invitations "testuj" / "przetestuj" are not here, see
    # the module docstring.
    "testy", "testu", "testem", "teście", "testów", "testami", "testach", "tescik", "tesciku",
    "testowanko", "testowa", "testowy", "testowe", "testowego", "testowej", "testowych",
    "testowym", "testową", "testowymi", "testowo", "testowanie", "testowania", "testowaniu",
    "testujemy", "testuję", "testują", "testowałem", "testowałam", "testowaliśmy", "testowane",
    "test wiadomości", "wiadomość testowa", "testowa wiadomość", "powiadomienie testowe",
    "wiadomość próbna", "powiadomienie próbne", "sprawdzam", "próba mikrofonu",
    "raz dwa trzy",
    # Greek
    "τεστ", "δοκιμαστικό", "δοκιμαστικό μήνυμα",
    # German
    "testnachricht", "testmeldung", "testbenachrichtigung", "testmitteilung", "probenachricht",
    "testversand", "das ist ein test",
    # French
    "message de test", "message d'essai", "notification de test", "ceci est un test",
    # Spanish
    "mensaje de prueba", "notificación de prueba", "push de prueba", "envío de prueba",
    "esto es una prueba", "probando",
    # Portuguese
    "teste", "mensagem de teste", "notificação de teste", "testando",
    # Italian
    "messaggio di prova", "notifica di prova", "messaggio di test", "questa è una prova",
    # Czech
    "zkouška", "testovací", "testovacího", "testovací zpráva", "zkušební zpráva",
    # Russian
    "тест", "тестовое", "тестовый", "тестовая", "тестовые", "тестового", "тестирование",
    "тестовое сообщение", "проверка связи",
    # Ukrainian
    "тестове", "тестовий", "тестова", "тестування", "тестове повідомлення",
    "перевірка зв'язку",
)  # fmt: skip

# "sample" is flagged as a whole word on purpose: "free sample" is rare in push copy while
# "sample" / "sample text" is what people type into test campaigns; "samples" stays legitimate.
# "bar" alone is deliberately absent: it is a place to drink in English, "cash" in German and
# "bar mleczny" in Polish, so it only counts next to its metasyntactic siblings.
_PLACEHOLDER_WORDS = (
    "dummy", "sample", "sample text", "placeholder", "foo", "baz", "qux", "foobar", "foo bar",
    "bar baz", "xxx", "xxxx", "xxxxx", "tbd", "fixme", "hello world", "ignore this",
    "please ignore", "ignore me", "przykładowa treść", "przykładowy tekst", "tekst zastępczy",
    "beispieltext", "platzhalter", "texto de ejemplo", "sample title", "sample body",
    "your text here", "text here", "your title here", "copy tbd", "przykładowy tytuł",
    "przykładowe powiadomienie", "przykładowa wiadomość", "tu będzie treść", "tu będzie tekst",
    "tu będzie tytuł", "treść do uzupełnienia", "tekst do uzupełnienia", "tytuł do uzupełnienia",
    "proszę zignorować", "proszę nie zwracać uwagi",
    # The Polish developer's classic test string; no bank writes it to a customer.
    "dupa",
)  # fmt: skip

# Everyday words that mean "test" only when they are the whole content: "Próba logowania" is a
# real login-attempt alert, "Prueba gratis" and "Essai gratuit" are free-trial offers.
_TEST_WHEN_ALONE = frozenset(
    _fold_phrase(word)
    for word in (
        "próba", "próbna", "próbny", "prueba", "prova", "essai", "probe", "testen", "testez",
        "проверка", "перевірка", "example", "ejemplo", "beispiel", "przykład", "exemple",
        "δοκιμή", "ping", "pong", "check", "sprawdzenie", "działa",
    )
)  # fmt: skip

# The names of the fields themselves, typed as their content ("Title" / "Body", "Tytuł
# powiadomienia" / "Treść powiadomienia"): only a field made of nothing else counts.
_FIELD_LABEL_WORDS = frozenset(
    _fold_phrase(word)
    for word in (
        "title", "subtitle", "body", "text", "here", "content", "message", "notification", "push",
        "tytuł", "podtytuł", "treść", "tekst", "nagłówek", "wiadomość", "wiadomości",
        "powiadomienie", "powiadomienia", "tu", "tutaj",
    )
)  # fmt: skip

# Words run together with "test" ("testpush", "pushtest", "qatest", "testowypush"). Only these
# partners count, because "contest", "latest", "protest", "attest" and "testament" are words.
_TEST_GLUE = (
    "push", "pusha", "api", "app", "qa", "uat", "dev", "prod", "sms", "mail", "fcm", "apns",
    "ios", "android", "notif", "notification", "notifications", "message", "msg", "campaign",
    "kampania", "kampanii", "powiadomienie", "powiadomienia", "wiadomosc", "wiadomosci",
    "load", "perf", "stress", "smoke", "unit", "e2e", "beta", "user", "my", "moj", "abc", "xyz",
)  # fmt: skip
_TEST_GLUE_RE = "(?:" + "|".join(sorted(_TEST_GLUE, key=lambda glue: (-len(glue), glue))) + ")"
# Spellings of "test" itself that are not in a dictionary: stretched ("tesst", "testtt") and
# joined to a partner or to itself. Matched on folded text, so they are lowercase ASCII.
_TEST_SPELLINGS = (
    r"t+e+s+t+",
    rf"{_TEST_GLUE_RE}t+e+s+t+(?:s|y|ow[aey])?",
    rf"t+e+s+t+(?:ow[aey]|ing)?{_TEST_GLUE_RE}",
    r"(?:test){2,}",
)
# Leetspeak that ends the word ("tes7", "te57") is spelled out here: unleet only reads a digit
# as a letter when a letter follows it.
_LEET_TEST_SPELLING = r"t+[e3€]+[s5$]+[t7+]+"

# A trial word next to a word for the message itself: "próba push", "próbna wysyłka",
# "powiadomienie kontrolne". Alone these adjectives are everyday Polish ("jazda próbna", "okres
# próbny", "próba logowania"), so only the pairing counts.
_TRIAL_WORDS = (
    "próba", "próbna", "próbne", "próbny", "próbnej", "próbnego", "próbną", "sprawdzenie",
    "kontrolna", "kontrolne", "kontrolny", "kontrolnej", "kontrolną",
)  # fmt: skip
_MESSAGE_NOUNS = (
    "push", "pusha", "pushe", "powiadomienie", "powiadomienia", "powiadomień", "wiadomość",
    "wiadomości", "notyfikacja", "notyfikacje", "notyfikacji", "sms", "smsy", "komunikat",
    "wysyłka", "wysyłki", "wysyłkę", "kampania", "kampanii", "kanał", "kanału",
    "polskich znaków", "znaków",
)  # fmt: skip

# Questions a tester asks the colleague holding the phone. They need a question mark, the end of
# the text or a message noun after them: "Sprawdź, czy dotarł przelew" is a real instruction.
_DELIVERY_QUESTIONS = (
    "czy działa", "czy to działa", "czy dochodzi", "czy to dochodzi", "czy dochodzą",
    "czy przychodzi", "czy przychodzą", "czy przyszło", "czy przyszedł", "czy doszło",
    "czy doszedł", "czy dotarło", "czy dotarł", "czy dotarła", "dostałeś", "dostałaś",
    "dostaliście", "widzisz to", "widać to", "czy widać",
)  # fmt: skip

# Labels of unfinished work; only the uppercase spelling is a marker ("draft beer" is not), and
# Spanish "todo" (everything) is why TODO lives here and not among the placeholder words.
_UPPERCASE_MARKERS = (
    "DRAFT", "WIP", "TODO", "ENTWURF", "BROUILLON", "BORRADOR", "BOZZA", "RASCUNHO",
    "ROBOCZY", "ROBOCZA", "WERSJA ROBOCZA", "ЧЕРНОВИК", "ЧЕРНЕТКА",
)  # fmt: skip

_BRACKET_WORDS = (
    *_TEST_WORDS,
    *(marker.lower() for marker in _UPPERCASE_MARKERS),
    "internal", "internal only", "qa", "uat", "staging",
)  # fmt: skip

# "Don't send your PIN to anyone" is a real security message, so these phrases only count when
# nothing customer-facing follows them (end of text, a bracket or separator, "yet", "to
# customers") or when they are shouted in otherwise normal text.
_DO_NOT_SEND_PHRASES = (
    "do not send", "don't send", "dont send", "not for sending", "do not publish",
    "nie wysyłać", "nie wysyłaj", "nie publikować", "nicht senden", "nicht versenden",
    "nicht verschicken", "ne pas envoyer", "n'envoyez pas", "no enviar", "no envíes",
    "no mandar", "não enviar", "non inviare", "neodesílat", "neposílat", "не отправлять",
    "не отправляйте", "не надсилати",
)  # fmt: skip
_DO_NOT_SEND_TAIL = re.compile(
    r"\s*(?:$|\.\s*$|[\])}>!:|/\u2013\u2014\-]|"
    + _alternation(
        (
            "yet", "to customers", "to clients", "to users", "to everyone", "to all",
            "jeszcze", "do klientów", "klientom", "an kunden", "aux clients", "a clientes",
            "ai clienti",
        )
    )
    + _NOT_BEFORE_LETTER
    + ")"
)  # fmt: skip

# No customer-facing message describes itself as internal, so these count anywhere.
_INTERNAL_ONLY_PHRASES = (
    "internal only", "internal use only", "for internal use", "for internal use only",
    "tylko do użytku wewnętrznego", "tylko wewnętrznie", "nur intern",
    "nur für den internen gebrauch", "usage interne",
)  # fmt: skip

_LOREM_ANCHORS = (
    "lorem", "ipsum dolor", "dolor sit amet", "consectetur adipiscing", "adipiscing elit",
    "sed do eiusmod", "eiusmod tempor", "incididunt ut labore", "dolore magna aliqua",
)  # fmt: skip
# Only extends a run that an anchor started; alone, "sit", "et", "magna" are real words.
_LOREM_VOCABULARY = (
    "lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "consectetuer", "adipiscing",
    "elit", "sed", "do", "eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore",
    "magna", "aliqua", "enim", "ad", "minim", "veniam", "quis", "nostrud",
)  # fmt: skip
# Typing-test pangrams, the Polish one being the classic way to check diacritics render.
_PANGRAMS = (
    "zażółć gęślą jaźń", "pchnąć w tę łódź jeża", "quick brown fox jumps",
    "sphinx of black quartz", "pack my box with five dozen", "zwölf boxkämpfer",
    "franz jagt im komplett verwahrlosten taxi", "portez ce vieux whisky",
    "veloz murciélago hindú", "příliš žluťoučký kůň", "съешь же ещё этих",
)  # fmt: skip

_KEYBOARD_ROWS = (
    "qwertyuiop", "asdfghjkl", "zxcvbnm",  # QWERTY
    "qwertzuiop", "yxcvbnm",  # QWERTZ
    "azertyuiop", "qsdfghjklm", "wxcvbn",  # AZERTY
)  # fmt: skip
_ROW_SEQUENCES = frozenset(
    row[start:end]
    for base in _KEYBOARD_ROWS
    for row in (base, base[::-1])
    for start in range(len(row))
    for end in range(start + 4, len(row) + 1)
) - {"reza", "ytre"}  # a Persian given name and a Norwegian word hiding in reversed rows
# Three-letter row runs are only mash when they are not also words ("wer" is German for "who").
_MASH_WORDS = frozenset({
    "qwerty", "qwertz", "azerty", "asdf", "zxcv", "hjkl", "asd", "sdf", "dfg", "fgh", "ghj",
    "hjk", "jkl", "qwe", "zxc", "xcv", "cvb", "vbn", "bnm", "yxc", "wxc", "qsd", "xyz", "abcd",
    "abcde", "abcdef", "abcdefg", "abcdefgh", "bla", "blah",
})  # fmt: skip
_MASH_STEMS = _MASH_WORDS | {"abc"}
_MASH_SYLLABLES = frozenset({
    "bla", "blah", "asd", "sdf", "dfg", "qwe", "zxc", "jkl", "xyz", "abc", "lol", "asdf", "qwer",
})  # fmt: skip
_VOWELS = frozenset("aeiouy")
_COUNTING = frozenset(
    sequence[:length]
    for base in ("1234567890", "0123456789")
    for sequence in (base, base[::-1])
    for length in range(4, len(base) + 1)
)

# Real words made only of diacritic letters; "żółć" (bile, also a fashion yellow) is the one
# a Polish retailer could plausibly send.
_REAL_DIACRITIC_WORDS = frozenset({"żółć", "łżą", "łżę"})
_STROKE_LETTERS = frozenset("łŁøØßẞđĐħĦŧŦŀĿ")

_KNOWN_VARIABLE_NAMES = (
    r"name|first_?name|last_?name|user_?name|full_?name|customer_?name|e_?mail|amount|"
    r"imi[eę]|nazwisko|kwota|vorname|nachname|nombre|pr[eé]nom|nome"
)
_TEMPLATE_PATTERNS = tuple(
    re.compile(pattern)
    for pattern in (
        r"\{\{\{?[^{}\n]{0,80}?\}?\}\}",  # {{name}}, {{ name }}, {{{raw}}}, {{#each}}
        r"\{%[^%\n]{0,80}?%\}",  # {% if %} blocks
        r"[$#]\{[^{}\n]{0,80}?\}",  # ${name}, #{name}
        r"(?<![{$#])\{(?:[A-Za-z_][\w.\-]{0,40}|\d{0,2})\}(?!\})",  # {name}, {0}, {}
        r"(?<![\w%])%(?:\d+\$)?[-+#0]?\d*(?:\.\d+)?(?:ll|l|h)?[sdifux@](?![A-Za-z])",  # %s %1$@
        r"(?<![\w%])%\([A-Za-z_]\w*\)[sdif]",  # %(name)s
        r"\[[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\]",  # [FIRST_NAME]
        rf"(?i:\[(?:{_KNOWN_VARIABLE_NAMES})\])",  # [Name]
        r"<[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+>",  # <first_name>
        rf"(?i:<(?:{_KNOWN_VARIABLE_NAMES})>)",  # <name>
        r"(?<![\w])__[A-Za-z][A-Za-z0-9_]*?__(?![\w])",  # __NAME__
        r"(?<=/):[A-Za-z_]\w*",  # route parameters in links: /offers/:id
        # In prose a ":word" is only a placeholder when it reads like an identifier; "10:30",
        # "Uwaga: nowa" and ":smile:" shortcodes stay out.
        rf"(?:(?<=\s)|^):(?:[a-z]+(?:_[a-z0-9]+)+|{_KNOWN_VARIABLE_NAMES})(?![\w:])",
        r"\*\|[^|\n]{1,60}\|\*",  # *|FNAME|* (Mailchimp)
        r"%%[^%\n]{1,80}%%",  # %%FirstName%% (Salesforce Marketing Cloud)
        r"<%[=\-#]?[^%\n]{0,80}?-?%>",  # <%= name %> (ERB, EJS)
        r"(?<![\w%])%[A-Za-z_][\w.]{0,40}%(?![\w%])",  # %NAME%
        r"(?<![\w$])\$[A-Za-z_]\w{0,40}\$(?![\w$])",  # $FIRST_NAME$
        rf"(?<![\w$])\$(?:[a-z]+_[a-z0-9_]+|(?i:{_KNOWN_VARIABLE_NAMES}))(?![\w$])",  # $first_name
        r"\[\[[^\[\]\n]{1,80}\]\]",  # [[name]]
        r"\{![^{}\n]{1,80}\}",  # {!Contact.FirstName} (Salesforce)
        r"%\{[^{}\n]{1,80}\}",  # %{name} (Ruby)
        r"\{\$[^{}\n]{1,80}\}",  # {$name} (Smarty)
        # «FirstName» mail-merge fields; French «guillemets» hold words with spaces around them.
        rf"«(?:[A-Za-z]+(?:_[A-Za-z0-9]+)+|[A-Z][a-z]+[A-Z]\w*|(?i:{_KNOWN_VARIABLE_NAMES}))»",
        r"(?i)%7B%7B.{0,80}?%7D%7D|(?:\$|%24)%7B.{0,80}?%7D",  # URL-encoded {{x}}, ${x}
        # Amounts and dates never filled in: "Rabat XX%", "X,XX zł", "do DD.MM.RRRR".
        r"(?<!\w)[Xx]{1,3}(?:[.,][Xx]{1,3})?\s?(?:%|zł|(?i:pln|eur|usd|gbp)|€|\$|£)(?!\w)",
        r"(?i)(?<!\w)(?:dd[./\-]mm(?:[./\-](?:rrrr|yyyy|rr|yy))?"
        r"|(?:rrrr|yyyy)[./\-]mm[./\-]dd)(?!\w)",
        r"(?i)(?<!\w)hh:mm(?!\w)",
    )
)

_TEST_HOST_LABELS = frozenset({
    "test", "testing", "tests", "staging", "stage", "stg", "dev", "develop", "development", "uat",
    "qa", "sandbox", "preprod", "pre-prod", "localhost", "sit", "int",
})  # fmt: skip
# Environment words glued to a service word in one label: "testapi", "uatcdn", "apidev".
_HOST_SERVICE_WORDS = (
    "api", "app", "www", "web", "cdn", "img", "images", "static", "push", "mobile", "portal",
    "bank", "online", "secure", "auth", "login", "gw", "gateway", "env", "srv",
)  # fmt: skip
_HOST_ENVIRONMENT_WORDS = ("test", "uat", "staging", "stg", "dev", "qa", "preprod")
_JOINED_HOST_LABEL = re.compile(
    "(?:" + "|".join(_HOST_ENVIRONMENT_WORDS) + ")(?:" + "|".join(_HOST_SERVICE_WORDS) + ")"
    "|(?:" + "|".join(_HOST_SERVICE_WORDS) + ")(?:" + "|".join(_HOST_ENVIRONMENT_WORDS) + ")"
)
# Services that only ever serve a developer: tunnels to a laptop, wildcard DNS to a local
# address, request catchers and placeholder-image generators.
_DEVELOPER_SERVICES: dict[str, str] = {
    **dict.fromkeys(
        ("ngrok.io", "ngrok.app", "ngrok-free.app", "ngrok-free.dev", "loca.lt",
         "trycloudflare.com", "localtest.me", "lvh.me", "nip.io", "sslip.io", "webhook.site",
         "requestbin.com", "pipedream.net"),
        "a developer tunnel or test service",
    ),
    **dict.fromkeys(
        ("placehold.co", "placehold.it", "placeholder.com", "picsum.photos", "dummyimage.com",
         "placekitten.com", "loremflickr.com", "fakeimg.pl", "placeimg.com"),
        "a placeholder-image service",
    ),
}  # fmt: skip
_RESERVED_TLDS = frozenset({"test", "example", "invalid", "local", "localhost"})
_URL_AUTHORITY = re.compile(r"(?i)(?<![\w+.\-])[a-z][a-z0-9+.\-]*://([^\s/?#\"'<>]+)")
_BARE_TEST_HOST = re.compile(
    r"(?i)(?<![\w.\-@/])(?:localhost|127\.0\.0\.1|(?:[a-z0-9\-]+\.)*example\.(?:com|org|net))"
    r"(?::\d+)?(?![\w\-])"
)
# Host names written without a scheme ("staging.bank.pl/promo", "jan@uat.bank.pl") and
# scheme-relative links ("//uat.bank.pl"). Only a reason from _test_host_reason makes them a
# finding, so ordinary prose with a dot in it costs nothing.
_BARE_HOST = re.compile(
    r"(?i)(?<![\w.\-])(?:[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?\.)+[a-z][a-z0-9\-]*[a-z0-9]"
    r"(?::\d{1,5})?(?=[/\s:?#,;!)\"'.]|$)"
)
# A dotted quad in prose is only an address when a port or a path follows it: "Wersja 10.2.1.5"
# is a version number.
_BARE_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?=[:/])")
_BARE_LINK_ADDRESS = re.compile(r"(?:(?:\d{1,3}\.){3}\d{1,3}|\[[0-9A-Fa-f:.%\w]+\])(?::\d{1,5})?")


# ---------------------------------------------------------------------------------------------
# Rules. Each takes (field path, the text read both ways) and yields hits in original-text
# coordinates.
# ---------------------------------------------------------------------------------------------

_Rule = Callable[[str, _Text], Iterator[_Hit]]

_TEST_WORD_PATTERN = (
    "(?:"
    + _alternation(_TEST_WORDS)
    + "|"
    + "|".join((*_TEST_SPELLINGS, _LEET_TEST_SPELLING))
    + ")"
)
# The same words written plainly; a match that is not one of these was disguised.
_PLAIN_TEST_WORD_RE = re.compile(
    "(?:" + _alternation(_TEST_WORDS) + "|" + "|".join(_TEST_SPELLINGS) + r")\d*"
)
_TEST_WORD_RE = re.compile(_NOT_AFTER_LETTER + _TEST_WORD_PATTERN + r"\d*" + _NOT_BEFORE_LETTER)
_PLACEHOLDER_RE = _whole_words(_PLACEHOLDER_WORDS)
_INTERNAL_ONLY_RE = _whole_words(_INTERNAL_ONLY_PHRASES, digits_suffix=False)
_DO_NOT_SEND_RE = _whole_words(_DO_NOT_SEND_PHRASES, digits_suffix=False)
_LETTER_WORD_RE = re.compile(r"[^\W\d_]+")
_TOKEN_RE = re.compile(r"[^\W_]+")
_TRIAL_MESSAGE_RE = re.compile(
    _NOT_AFTER_LETTER
    + "(?:"
    + _alternation(_TRIAL_WORDS) + _WORD_SEPARATOR + _alternation(_MESSAGE_NOUNS)
    + "|"
    + _alternation(_MESSAGE_NOUNS) + _WORD_SEPARATOR + _alternation(_TRIAL_WORDS)
    + ")"
    + _NOT_BEFORE_LETTER
)  # fmt: skip
_DELIVERY_QUESTION_RE = _whole_words(_DELIVERY_QUESTIONS, digits_suffix=False)
_DELIVERY_QUESTION_TAIL = re.compile(
    r"\s*(?:$|[?!.\u2026]|" + _alternation(_MESSAGE_NOUNS) + _NOT_BEFORE_LETTER + ")"
)
# Letters spelled out one by one ("t e s t", "T.E.S.T", "t-e-s-t-o-w-a").
_SPACED_LETTERS_RE = re.compile(
    _NOT_AFTER_LETTER + r"(?:[^\W\d_][ .\-_*\u00b7]{1,2}){2,}[^\W\d_]" + _NOT_BEFORE_LETTER
)
_SPELLED_TEST_WORD_RE = re.compile(_TEST_WORD_PATTERN + r"\d*")

# Idioms in which "test" cannot mean "this message is a test" (see the module docstring).
_DRIVE_AFTER = re.compile(r"[\s\-]*driv")  # test-drive, test drive, test-driving
_IDIOM_BEFORE = re.compile(
    r"(?:" + _NOT_AFTER_LETTER + r"to\s+the|" + _NOT_AFTER_LETTER
    + r"(?:okres|okresie|okresu|jazda|jazde|jazdy))\s+$"
    # An A/B test is the experiment a real campaign belongs to ("?utm_content=ab_test_b").
    + r"|" + _NOT_AFTER_LETTER + r"(?:ab|a[/_\-]b|split)[\s_\-]?$"
)  # fmt: skip


def _is_real_use(folded: str, start: int, end: int) -> bool:
    """Whether the test word at folded[start:end] sits in one of the idioms above."""
    word = folded[start:end]
    if word == "test" and _DRIVE_AFTER.match(folded, end) is not None:
        return True
    if word == "test" or word.startswith("testow"):
        return _IDIOM_BEFORE.search(folded[max(0, start - 24) : start]) is not None
    return False


def _matches(pattern: re.Pattern[str], text: _Text) -> Iterator[tuple[_Folded, re.Match[str]]]:
    """Matches of a word pattern in each reading of the text, each original fragment once."""
    seen: set[tuple[int, int]] = set()
    for view in text.views:
        for found in pattern.finditer(view.text):
            span = view.span(*found.span())
            if found.end() > found.start() and span not in seen:
                seen.add(span)
                yield view, found


def _disguise(text: _Text, view: _Folded, found: re.Match[str], plain: re.Pattern[str]) -> str:
    """A note for the message when the fragment only matched once its disguise was read."""
    start, end = view.span(*found.span())
    fragment = text.original[start:end]
    disguised = plain.fullmatch(_fold_phrase(fragment)) is None or any(
        (view is text.latin and ch in CONFUSABLES)
        or unicodedata.category(ch) == "Cf"
        # Compatibility characters: fullwidth, mathematical, superscript, small capitals.
        or unicodedata.decomposition(ch).startswith("<")
        for ch in fragment
    )
    return " (spelled with look-alike characters or digits)" if disguised else ""


def _placeholder_words(field: str, text: _Text) -> Iterator[_Hit]:
    def hit(start: int, end: int, why: str, disguise: str = "") -> _Hit:
        return _Hit(
            start, end, LintCode.PLACEHOLDER_WORD,
            f"{field} contains {_quote(text.original[start:end])}{disguise}, {why}, so it looks "
            "like test content",
        )  # fmt: skip

    labels = "wording used to label test messages"
    filler = "a placeholder that developers type instead of real copy"
    for pattern, plain, why in (
        (_TEST_WORD_RE, _PLAIN_TEST_WORD_RE, labels),
        (_PLACEHOLDER_RE, _PLACEHOLDER_RE, filler),
        (_TRIAL_MESSAGE_RE, _TRIAL_MESSAGE_RE, labels),
    ):
        for view, found in _matches(pattern, text):
            if pattern is _TEST_WORD_RE and _is_real_use(view.text, *found.span()):
                continue
            yield hit(*view.span(*found.span()), why, _disguise(text, view, found, plain))
    for view, found in _matches(_SPACED_LETTERS_RE, text):
        letters = "".join(ch for ch in found.group() if ch.isalpha())
        if _SPELLED_TEST_WORD_RE.fullmatch(letters):
            yield hit(*view.span(*found.span()), "test wording spelled out letter by letter")
    for found in _DELIVERY_QUESTION_RE.finditer(text.plain.text):
        if _DELIVERY_QUESTION_TAIL.match(text.plain.text, found.end()) is not None:
            why = "a tester asking whether the push arrived"
            yield hit(*text.plain.span(*found.span()), why)
    words = list(_LETTER_WORD_RE.finditer(text.plain.text))
    if words and all(word.group() in _TEST_WHEN_ALONE for word in words):
        start, _ = text.plain.span(*words[0].span())
        _, end = text.plain.span(*words[-1].span())
        yield _Hit(
            start, end, LintCode.PLACEHOLDER_WORD,
            f"{field} is only {_quote(text.original[start:end])}, a word that on its own means a "
            "trial or test, so it looks like test content",
        )  # fmt: skip
    elif words and all(word.group() in _FIELD_LABEL_WORDS for word in words):
        start, _ = text.plain.span(*words[0].span())
        _, end = text.plain.span(*words[-1].span())
        yield _Hit(
            start, end, LintCode.PLACEHOLDER_WORD,
            f"{field} is only {_quote(text.original[start:end])}, the name of a field typed in "
            "place of its content, so it looks like test content",
        )  # fmt: skip


_BRACKET_MARKER_RE = re.compile(
    r"[\[(<{]\s*(?:" + _alternation(_BRACKET_WORDS) + "|" + _TEST_WORD_PATTERN
    + r")\d*\s*[\])>}]|\*+\s*test\s*\*+"
)  # fmt: skip
_PREFIX_MARKER_RE = re.compile(
    r"^[^\w]*?(" + _NOT_AFTER_LETTER + _TEST_WORD_PATTERN + r"\d*\s*[:|>\u2013\u2014\-])"
)
_UPPERCASE_MARKER_RE = re.compile(
    _NOT_AFTER_LETTER
    + "(?:"
    + "|".join(re.escape(m).replace(r"\ ", r"\s+") for m in _UPPERCASE_MARKERS)
    + ")"
    + _NOT_BEFORE_LETTER
)
_MARKER_TAIL_RE = re.compile(r"\s*[:|\]\)>\u2013\u2014\-]")


def _test_markers(field: str, text: _Text) -> Iterator[_Hit]:
    def hit(start: int, end: int) -> _Hit:
        fragment = text.original[start:end]
        return _Hit(
            start, end, LintCode.TEST_MARKER,
            f"{field} contains the marker {_quote(fragment)}, which labels a message as a test "
            "or an unfinished draft",
        )  # fmt: skip

    for view, found in _matches(_BRACKET_MARKER_RE, text):
        yield hit(*view.span(*found.span()))
    for view in text.views:
        prefix = _PREFIX_MARKER_RE.match(view.text)
        if prefix is not None:
            word = _TEST_WORD_RE.match(view.text, prefix.start(1))
            word_end = word.end() if word is not None else prefix.end(1)
            if not _is_real_use(view.text, prefix.start(1), word_end):
                yield hit(*view.span(*prefix.span(1)))
    original = text.original
    shouting = not _has_lowercase(original)
    for found in _UPPERCASE_MARKER_RE.finditer(original):
        # In all-caps copy an uppercase word is just a word ("DRAFT BEER -50%"), unless it is
        # set off like a label or is all there is.
        labelled = _MARKER_TAIL_RE.match(original, found.end()) is not None
        alone = original.strip() == found.group()
        if not shouting or labelled or alone:
            yield hit(*found.span())


def _do_not_send(field: str, text: _Text) -> Iterator[_Hit]:
    folded = text.plain

    def hit(start: int, end: int) -> _Hit:
        fragment = folded.original[start:end]
        return _Hit(
            start, end, LintCode.DO_NOT_SEND,
            f"{field} contains {_quote(fragment)}, an internal instruction that this message "
            "must not go to customers",
        )  # fmt: skip

    for found in _INTERNAL_ONLY_RE.finditer(folded.text):
        yield hit(*folded.span(*found.span()))
    shouting = not _has_lowercase(folded.original)
    for found in _DO_NOT_SEND_RE.finditer(folded.text):
        start, end = folded.span(*found.span())
        fragment = folded.original[start:end]
        instruction = _DO_NOT_SEND_TAIL.match(folded.text, found.end()) is not None
        shouted = not shouting and not _has_lowercase(fragment)
        if instruction or shouted:
            yield hit(start, end)


_LOREM_ANCHOR_RE = re.compile(_NOT_AFTER_LETTER + _alternation(_LOREM_ANCHORS) + _NOT_BEFORE_LETTER)
_LOREM_CONTINUATION_RE = re.compile(
    r"(?:[\s,.;:!?\-]+" + _alternation(_LOREM_VOCABULARY) + _NOT_BEFORE_LETTER + ")*"
)
_PANGRAM_RE = _whole_words(_PANGRAMS, digits_suffix=False)


def _lorem_ipsum(field: str, text: _Text) -> Iterator[_Hit]:
    folded = text.plain
    covered = 0
    for anchor in _LOREM_ANCHOR_RE.finditer(folded.text):
        if anchor.start() < covered:
            continue
        continuation = _LOREM_CONTINUATION_RE.match(folded.text, anchor.end())
        covered = continuation.end() if continuation is not None else anchor.end()
        start, end = folded.span(anchor.start(), covered)
        yield _Hit(
            start, end, LintCode.LOREM_IPSUM,
            f"{field} contains {_quote(folded.original[start:end])}, lorem ipsum filler text "
            "used in mock-ups",
        )  # fmt: skip
    for found in _PANGRAM_RE.finditer(folded.text):
        start, end = folded.span(*found.span())
        yield _Hit(
            start, end, LintCode.LOREM_IPSUM,
            f"{field} contains {_quote(folded.original[start:end])}, a pangram typed to test "
            "fonts and keyboards",
        )  # fmt: skip


def _template_variables(field: str, text: _Text) -> Iterator[_Hit]:
    original = text.original
    for pattern in _TEMPLATE_PATTERNS:
        for found in pattern.finditer(original):
            if found.end() == found.start():
                continue
            yield _Hit(
                found.start(), found.end(), LintCode.TEMPLATE_VARIABLE,
                f"{field} contains {_quote(found.group())}, an unrendered template variable: "
                "customers would see the placeholder instead of their own data",
            )  # fmt: skip


_IPV4_PART = re.compile(r"0[xX][0-9a-fA-F]{1,8}|[0-9]{1,10}")


def _ipv4_number(part: str) -> int | None:
    """One dotted part as inet_aton reads it: hexadecimal "0x7f", octal "0177" or decimal."""
    if not _IPV4_PART.fullmatch(part):
        return None
    if part[:2] in ("0x", "0X"):
        return int(part[2:], 16)
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8) if set(part) <= set("01234567") else None
    return int(part)


def _parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address in any spelling a browser accepts: "127.1", "0x7f000001", "2130706433"."""
    if host.startswith("["):
        try:
            return ipaddress.ip_address(host[1:].split("]", 1)[0].split("%", 1)[0])
        except ValueError:
            return None
    parts = host.split(".")
    if len(parts) > 4:
        return None
    parsed = [_ipv4_number(part) for part in parts]
    numbers = [number for number in parsed if number is not None]
    if len(numbers) != len(parts):
        return None
    # Like inet_aton: the last part fills all the bytes the earlier ones left.
    *leading, last = numbers
    if any(number > 255 for number in leading) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for position, number in enumerate(leading):
        value |= number << (8 * (3 - position))
    return ipaddress.IPv4Address(value)


def _label_pieces(label: str) -> list[str]:
    return [piece for piece in re.split(r"[-_\d]+", label) if piece]


def _test_host_reason(host: str) -> str | None:
    host = host.rsplit("@", 1)[-1].lower()
    if not host.startswith("["):
        host = host.split(":", 1)[0]
    host = host.rstrip(".")
    if not host:
        return None
    address = _parse_ip(host)
    if address is not None:
        if address.is_loopback:
            return "a loopback address"
        if address.is_private or address.is_link_local or address.is_unspecified:
            return "a local or private network address"
        return None
    labels = host.split(".")
    if labels[-1] in _RESERVED_TLDS:
        return "a reserved test or local domain"
    if len(labels) >= 2 and labels[-2] == "example" and labels[-1] in ("com", "org", "net"):
        return "the documentation example domain"
    for suffix, reason in _DEVELOPER_SERVICES.items():
        if host == suffix or host.endswith("." + suffix):
            return reason
    # The registrable name counts too, by its hyphenated pieces only: "bank-uat.pl" is a test
    # environment, "speedtest.net" or "latest.pl" are not.
    for label in labels[:-1]:
        pieces = _label_pieces(label)
        if (
            label in _TEST_HOST_LABELS
            or any(piece in _TEST_HOST_LABELS for piece in pieces)
            or any(_JOINED_HOST_LABEL.fullmatch(piece) for piece in pieces)
        ):
            return "a test-environment host"
    return None


def _link_hosts(field: str, original: str) -> Iterator[tuple[int, int, str]]:
    for found in _URL_AUTHORITY.finditer(original):
        yield found.start(1), found.end(1), found.group(1)
    for pattern in (_BARE_TEST_HOST, _BARE_HOST, _BARE_IPV4):
        for found in pattern.finditer(original):
            before = original[max(0, found.start() - 2) : found.start()]
            # A name after one slash is a path segment ("/push/test.png"), not a host; after
            # two it is a scheme-relative link.
            if before.endswith("/") and before != "//":
                continue
            yield found.start(), found.end(), found.group()
    if _leaf(field) in _MACHINE_LEAVES and "://" not in original:
        # A link field holding a bare address ("10.1.2.3", "[::1]:8000/offers"); lone numbers
        # are ids, so other spellings of an address only count inside a URL.
        host = original.strip().lstrip("/").split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
        if _BARE_LINK_ADDRESS.fullmatch(host):
            start = original.index(host)
            yield start, start + len(host), host


def _test_links(field: str, text: _Text) -> Iterator[_Hit]:
    for start, end, host in _link_hosts(field, text.original):
        reason = _test_host_reason(host)
        if reason is not None:
            yield _Hit(
                start, end, LintCode.TEST_LINK,
                f"{field} points to {_quote(host)}, {reason} that customers cannot or must not "
                "reach from production",
            )  # fmt: skip


def _letter_units(text: str) -> list[tuple[int, int]]:
    """Letters with their trailing combining marks, so decomposed input reads like composed."""
    units: list[tuple[int, int]] = []
    index = 0
    while index < len(text):
        end = index + 1
        if unicodedata.category(text[index]).startswith("L"):
            while end < len(text) and is_mark(text[end]):
                end += 1
            units.append((index, end))
        index = end
    return units


def _is_diacritic_letter(unit: str) -> bool:
    if unit[0] in _STROKE_LETTERS:
        return True
    decomposed = unicodedata.normalize("NFD", unit)
    # Only Latin letters count: a keyboard test types Latin accents, while fully vocalised
    # Arabic or Hebrew legitimately puts a mark on every letter.
    return (
        len(decomposed) > 1
        and decomposed[0].isascii()
        and any(is_mark(ch) for ch in decomposed[1:])
    )


def _is_real_diacritic_word(word: str) -> bool:
    return unicodedata.normalize("NFC", word).casefold() in _REAL_DIACRITIC_WORDS


def _diacritics_only(field: str, source: _Text) -> Iterator[_Hit]:
    folded = source.plain
    text = folded.original
    units = _letter_units(text)
    words: list[list[tuple[int, int]]] = []
    for unit in units:
        if words and words[-1][-1][1] == unit[0]:
            words[-1].append(unit)
        else:
            words.append([unit])

    def diacritic_only(word: list[tuple[int, int]]) -> bool:
        return all(_is_diacritic_letter(text[start:end]) for start, end in word)

    def real(word: list[tuple[int, int]]) -> bool:
        return _is_real_diacritic_word(text[word[0][0] : word[-1][1]])

    if len(units) >= 2 and all(diacritic_only(word) for word in words):
        if not all(real(word) for word in words):
            stripped = text.strip()
            start = text.index(stripped)
            end = start + len(stripped)
            yield _Hit(
                start, end, LintCode.DIACRITICS_ONLY,
                f"{field} {_quote(stripped)} is made only of letters with diacritics, which "
                "looks like a keyboard test rather than words",
            )  # fmt: skip
        return
    for word in words:
        if len(word) >= 3 and diacritic_only(word) and not real(word):
            start, end = word[0][0], word[-1][1]
            yield _Hit(
                start, end, LintCode.DIACRITICS_ONLY,
                f"{field} contains {_quote(text[start:end])}, a word made only of letters with "
                "diacritics, which looks like a keyboard test rather than a real word",
            )  # fmt: skip


def _is_repeated_syllable(token: str) -> bool:
    for unit_length in (2, 3, 4):
        repetitions, remainder = divmod(len(token), unit_length)
        unit = token[:unit_length]
        if remainder or repetitions < 2 or unit * repetitions != token:
            continue
        if len(set(unit)) == 1:
            continue  # a single repeated letter belongs to repeated_character
        if repetitions >= 3:
            return True
        # Two repetitions are common in real words ("mama", "bonbon", "couscous", "tomtom"), so
        # they only count for typing syllables or vowel-less Latin units ("sdfsdf").
        if unit in _MASH_SYLLABLES or (unit.isascii() and not set(unit) & _VOWELS):
            return True
    return False


def _mash_reason(token: str) -> str | None:
    if token in _MASH_WORDS:
        return "a well-known keyboard-test string"
    if token.isalpha():
        if len(token) >= 4 and token in _ROW_SEQUENCES:
            return "a run of adjacent keys on one keyboard row"
        if len(token) >= 4 and _is_repeated_syllable(token):
            return "a repeated syllable typed as filler"
        return None
    if token.isdigit():
        if token in _COUNTING:
            return "a counting sequence typed as a test value"
        if len(token) >= 5 and len(set(token)) == 1:
            return "one digit repeated, typed as a test value"
        return None
    stem = re.fullmatch(r"([^\W\d_]+)\d+|\d+([^\W\d_]+)", token)
    if stem is not None and (stem.group(1) or stem.group(2)) in _MASH_STEMS:
        return "a keyboard-test string with digits appended"
    return None


def _part_of_number(text: str, start: int, end: int) -> bool:
    # "1234,00 zł" is an amount and "****1234" a masked card, not someone counting keys.
    after = text[end : end + 2]
    before = text[max(0, start - 3) : start]
    joined_after = len(after) == 2 and after[0] in ",." and after[1].isdigit()
    joined_before = len(before) >= 2 and before[-1] in ",." and before[-2].isdigit()
    masked = any(ch in "*•·#" for ch in before)
    return joined_after or joined_before or masked


def _keyboard_mash(field: str, source: _Text) -> Iterator[_Hit]:
    folded = source.plain
    for found in _TOKEN_RE.finditer(folded.text):
        reason = _mash_reason(found.group())
        if reason is None:
            continue
        if found.group().isdigit() and _part_of_number(folded.text, *found.span()):
            continue
        start, end = folded.span(*found.span())
        yield _Hit(
            start, end, LintCode.KEYBOARD_MASH,
            f"{field} contains {_quote(folded.original[start:end])}, {reason}, which looks "
            "like a keyboard test",
        )  # fmt: skip


_REPEATED_LETTER_RE = re.compile(r"([^\W\d_])\1{3,}", re.IGNORECASE)
_REPEATED_SYMBOL_RE = re.compile(r"([^\w\s])\1{5,}")
# A word of one letter typed three times ("aaa", "kkk", "zzz"). Capitals in mixed-case copy are
# ratings and numerals ("AAA", "Etap III"), and "www" is the start of an address.
_TRIPLED_LETTER_RE = re.compile(_NOT_AFTER_LETTER + r"([^\W\d_])\1\1" + _NOT_BEFORE_LETTER, re.I)
_TRIPLED_LETTER_EXCEPTIONS = frozenset({"www"})


def _repeated_character(field: str, source: _Text) -> Iterator[_Hit]:
    folded = source.plain
    text = folded.original
    symbol_hits = (
        found
        for found in _REPEATED_SYMBOL_RE.finditer(text)
        # Emoji (So) are repeated for emphasis in real campaigns; marks are not characters.
        if unicodedata.category(found.group(1))[0] in "PS"
        and unicodedata.category(found.group(1)) != "So"
    )
    tripled = (
        found
        for found in _TRIPLED_LETTER_RE.finditer(text)
        if found.group().casefold() not in _TRIPLED_LETTER_EXCEPTIONS
        and (_has_lowercase(found.group()) or text.strip() == found.group())
    )
    for found in (*_REPEATED_LETTER_RE.finditer(text), *tripled, *symbol_hits):
        yield _Hit(
            found.start(), found.end(), LintCode.REPEATED_CHARACTER,
            f"{field} contains {_quote(found.group())}, the same character "
            f"{len(found.group())} times in a row, which looks like filler typed while testing",
        )  # fmt: skip


def _too_short(field: str, source: _Text) -> Iterator[_Hit]:
    folded = source.plain
    text = folded.original
    stripped = text.strip()
    # Emptiness is the schema's concern (a title-only push is legitimate), and an emoji-only
    # title ("🎁") is a deliberate design choice rather than a slip.
    if not stripped or any(unicodedata.category(ch) == "So" for ch in stripped):
        return
    if len(_letter_units(stripped)) >= 2:
        return
    start = text.index(stripped)
    yield _Hit(
        start, start + len(stripped), LintCode.TOO_SHORT,
        f"{field} {_quote(stripped)} has fewer than two letters, which looks like a test or a "
        "slip rather than a message",
    )  # fmt: skip


_SHARED_RULES: tuple[_Rule, ...] = (
    _test_markers, _do_not_send, _test_links, _lorem_ipsum, _template_variables,
    _placeholder_words, _diacritics_only,
)  # fmt: skip
# Identifiers and URLs in data values and links are legitimately short, numeric or repetitive.
_PROSE_RULES: tuple[_Rule, ...] = (_keyboard_mash, _repeated_character)


def _rules_for(field: str) -> tuple[_Rule, ...]:
    if _is_machine_field(field):
        return _SHARED_RULES
    if _is_message_field(field):
        return (*_SHARED_RULES, *_PROSE_RULES, _too_short)
    return (*_SHARED_RULES, *_PROSE_RULES)


# ---------------------------------------------------------------------------------------------
# Pair rule: identical title and body
# ---------------------------------------------------------------------------------------------


def _comparable(text: str) -> str:
    normalised = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in normalised if unicodedata.category(ch)[0] in "LNM")


def _title_path_for(body_path: str) -> str | None:
    if body_path == "body":
        return "title"
    if body_path.endswith(".body") and not _is_machine_field(body_path):
        return body_path[: -len("body")] + "title"
    return None


def _identical_title_body(fields: Mapping[str, str], body_path: str) -> Iterator[_Hit]:
    title_path = _title_path_for(body_path)
    if title_path is None or title_path not in fields:
        return
    body = fields[body_path]
    comparable = _comparable(body)
    if comparable and comparable == _comparable(fields[title_path]):
        stripped = body.strip()
        start = body.index(stripped)
        yield _Hit(
            start, start + len(stripped), LintCode.IDENTICAL_TITLE_BODY,
            f"{body_path} repeats {title_path} ({_quote(stripped)}) word for word, which is "
            "typical of a quickly typed test message",
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def _explained_elsewhere(hit: _Hit, others: list[_Hit]) -> bool:
    if hit.code in _NON_SUPPRESSING:
        return False
    for other in others:
        if other is hit or other.code in _NON_SUPPRESSING:
            continue
        if other.start <= hit.start and hit.end <= other.end:
            wider = (other.end - other.start) > (hit.end - hit.start)
            if wider or _PRIORITY[other.code] < _PRIORITY[hit.code]:
                return True
    return False


def _sort_key(hit: _Hit) -> tuple[int, int, int, str]:
    return (hit.start, -(hit.end - hit.start), _PRIORITY[hit.code], hit.message)


def lint_content(fields: Mapping[str, str]) -> list[LintFinding]:
    """Explain every reason the given content looks like test content; empty means clean.

    ``fields`` maps a field path ("title", "body", "ios.title", "locales.pl.body", "data.<key>",
    "deep_link", ...) to its text; the caller flattens per-platform overrides, per-locale variants
    and string data values into it. Paths under ``data.`` and link fields are treated as
    identifiers (no keyboard-mash, repetition or length rules); ``title`` / ``body`` pairs that
    share a prefix are also compared with each other.

    Findings come in the order of ``fields``, then by position in the text, so the same content
    always yields the same list.
    """
    findings: list[LintFinding] = []
    for field, text in fields.items():
        read = _read(text)
        hits = [hit for rule in _rules_for(field) for hit in rule(field, read)]
        hits.extend(_identical_title_body(fields, field))
        unique = list(dict.fromkeys(hits))
        kept = [hit for hit in unique if not _explained_elsewhere(hit, unique)]
        findings.extend(
            LintFinding(
                code=hit.code.value,
                field=field,
                match=text[hit.start : hit.end],
                message=hit.message,
            )
            for hit in sorted(kept, key=_sort_key)
        )
    return findings


def lint_title_body(title: str, body: str) -> list[LintFinding]:
    """Lint a bare title and body, including the check that they are not the same text."""
    return lint_content({"title": title, "body": body})
