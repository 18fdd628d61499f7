"""Content lint: test-looking content is caught and explained, real campaigns pass untouched."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.guard.lint import LintCode, LintFinding, lint_content, lint_title_body


def codes(text: str, field: str = "body") -> set[str]:
    return {finding.code for finding in lint_content({field: text})}


def findings_with(code: LintCode, text: str, field: str = "body") -> list[LintFinding]:
    return [finding for finding in lint_content({field: text}) if finding.code == code]


# --- the incident ------------------------------------------------------------------------------


def test_the_bank_incident_is_caught_on_both_fields() -> None:
    findings = lint_title_body("ęśąćż", "test wiadomości push")

    by_field = {finding.field: finding for finding in findings}
    assert set(by_field) == {"title", "body"}
    assert by_field["title"].code == LintCode.DIACRITICS_ONLY
    assert by_field["title"].match == "ęśąćż"
    assert by_field["title"].message == (
        'title "ęśąćż" is made only of letters with diacritics, which looks like a keyboard test '
        "rather than words"
    )
    assert by_field["body"].code == LintCode.PLACEHOLDER_WORD
    assert by_field["body"].match.startswith("test")
    assert '"test' in by_field["body"].message


# --- one test per rule -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("test", "test"),
        ("Test 2", "Test"),
        ("test1", "test1"),
        ("TESTING the new flow", "TESTING"),
        ("Tester", "Tester"),
        ("Some dummy text", "dummy"),
        ("sample", "sample"),
        ("Placeholder copy", "Placeholder"),
        ("foo", "foo"),
        ("foo bar", "foo bar"),
        ("foo_bar", "foo_bar"),
        ("baz", "baz"),
        ("qux", "qux"),
        ("Kwota: xxx zł", "xxx"),
        ("Launch date TBD", "TBD"),
        ("fixme", "fixme"),
        ("Hello World", "Hello World"),
        ("Please ignore", "Please ignore"),
        ("ignore this", "ignore this"),
        ("test message", "test message"),
        ("Test push", "Test push"),
        ("To jest wiadomość testowa", "wiadomość testowa"),
        ("WIADOMOŚĆ TESTOWA", "WIADOMOŚĆ TESTOWA"),
        ("Testowa promocja", "Testowa"),
        ("powiadomienie testowe", "powiadomienie testowe"),
        ("Próba", "Próba"),
        ("próba 2", "próba"),
        ("prueba", "prueba"),
        ("mensaje de prueba", "mensaje de prueba"),
        ("essai", "essai"),
        ("message d'essai", "message d'essai"),
        ("teste", "teste"),
        ("mensagem de teste", "mensagem de teste"),
        ("prova", "prova"),
        ("messaggio di prova", "messaggio di prova"),
        ("zkouška", "zkouška"),
        ("testovací zpráva", "testovací zpráva"),
        ("тест", "тест"),
        ("тестовое сообщение", "тестовое сообщение"),
        ("проверка", "проверка"),
        ("тестове повідомлення", "тестове повідомлення"),
        ("Testnachricht", "Testnachricht"),
        ("teśt", "teśt"),
        ("te\u200bst", "te\u200bst"),
        ("ｔｅｓｔ", "ｔｅｓｔ"),
    ],
)
def test_placeholder_and_test_words_are_flagged(text: str, match: str) -> None:
    found = findings_with(LintCode.PLACEHOLDER_WORD, text)

    assert [finding.match for finding in found] == [match]


@pytest.mark.parametrize(
    "text",
    [
        "Join our contest",
        "Share your testimony",
        "Bank attestation ready",
        "Bartek, masz wiadomość",
        "Barbecue season",
        "Football boots",
        "Free samples of our new menu",
        "Happy hour at the bar",
        "Todo a mitad de precio",
        "Prueba gratis durante 30 días",
        "Próba logowania na Twoje konto",
        "Essai gratuit de 30 jours",
        "Prova gratis per 30 giorni",
        "Jetzt 30 Tage kostenlos testen",
        "Testsieger bei Stiftung Warentest",
        "Проверка безопасности",
    ],
)
def test_placeholder_words_are_whole_words_in_their_test_sense(text: str) -> None:
    assert lint_content({"body": text}) == []


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("asdf", "asdf"),
        ("qwerty", "qwerty"),
        ("QWERTZ", "QWERTZ"),
        ("azerty", "azerty"),
        ("zxcv", "zxcv"),
        ("hjkl", "hjkl"),
        ("jkl;", "jkl"),
        ("sdfsdf", "sdfsdf"),
        ("asdasd", "asdasd"),
        ("xyz", "xyz"),
        ("abc123", "abc123"),
        ("123456", "123456"),
        ("Kod 1234", "1234"),
        ("asdfghjkl", "asdfghjkl"),
        ("poiuy", "poiuy"),
        ("wxcvbn", "wxcvbn"),
        ("lalala", "lalala"),
        ("blabla", "blabla"),
        ("ąsdf", "ąsdf"),
        ("Nowa promocja qwerty", "qwerty"),
        ("00000", "00000"),
    ],
)
def test_keyboard_mash_is_flagged(text: str, match: str) -> None:
    found = findings_with(LintCode.KEYBOARD_MASH, text)

    assert [finding.match for finding in found] == [match]


@pytest.mark.parametrize(
    "text",
    ["ęśąćż", "ĘŚĄĆŻ", "ąę ść", "łóżź", "éèêë", "ñ ü ö", unicodedata.normalize("NFD", "ęśąćż")],
)
def test_fields_made_only_of_diacritic_letters_are_flagged(text: str) -> None:
    found = findings_with(LintCode.DIACRITICS_ONLY, text, field="title")

    assert [finding.match for finding in found] == [text.strip()]


@pytest.mark.parametrize(
    ("text", "match"),
    [("Promocja ęśąćż już dziś", "ęśąćż"), ("Nowość: ĄĘŚĆ", "ĄĘŚĆ")],
)
def test_words_made_only_of_diacritic_letters_are_flagged(text: str, match: str) -> None:
    found = findings_with(LintCode.DIACRITICS_ONLY, text)

    assert [finding.match for finding in found] == [match]


@pytest.mark.parametrize(
    "text", ["Żółć", "Modna żółć tej wiosny", "Łódź", "źle", "Ćma", "Ósmy dzień", "é", "Już łąka"]
)
def test_real_words_with_diacritics_pass(text: str) -> None:
    assert findings_with(LintCode.DIACRITICS_ONLY, text) == []


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("Cześć {{name}}!", "{{name}}"),
        ("Cześć {{ name }}!", "{{ name }}"),
        ("Hi {name}", "{name}"),
        ("Hi ${name}", "${name}"),
        ("Hi %s", "%s"),
        ("You have %d points", "%d"),
        ("Hi %(name)s", "%(name)s"),
        ("Dear [FIRST_NAME]", "[FIRST_NAME]"),
        ("Dear [Name]", "[Name]"),
        ("Dear <first_name>", "<first_name>"),
        ("Dear __NAME__", "__NAME__"),
        ("Hi :first_name, welcome", ":first_name"),
        ("Hi :name", ":name"),
        ("{{#each offers}}", "{{#each offers}}"),
        ("Hi {0}", "{0}"),
        ("Balance %1$@", "%1$@"),
        ("{% if vip %}VIP", "{% if vip %}"),
    ],
)
def test_unrendered_template_variables_are_flagged(text: str, match: str) -> None:
    found = findings_with(LintCode.TEMPLATE_VARIABLE, text)

    assert [finding.match for finding in found] == [match]


def test_route_parameters_in_deep_links_are_flagged() -> None:
    found = findings_with(LintCode.TEMPLATE_VARIABLE, "bank://offers/:offer_id", "deep_link")

    assert [finding.match for finding in found] == [":offer_id"]


@pytest.mark.parametrize(
    "text",
    ["Rabat 20%", "100% zwrotu", "Godzina 10:30", "Uwaga: nowa oferta", "Cena 9,99 zł", "A < B"],
)
def test_prices_times_and_colons_are_not_template_variables(text: str) -> None:
    assert findings_with(LintCode.TEMPLATE_VARIABLE, text) == []


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("Lorem ipsum", "Lorem ipsum"),
        ("lorem", "lorem"),
        ("Lorem ipsum dolor sit amet, consectetur adipiscing elit.", None),
        ("text ipsum dolor here", "ipsum dolor"),
        ("dolor sit amet", "dolor sit amet"),
        ("consectetur adipiscing elit", "consectetur adipiscing elit"),
        ("Zażółć gęślą jaźń", "Zażółć gęślą jaźń"),
        ("The quick brown fox jumps over the lazy dog", "quick brown fox jumps"),
        ("Pchnąć w tę łódź jeża lub ośm skrzyń fig", "Pchnąć w tę łódź jeża"),
    ],
)
def test_lorem_ipsum_and_pangrams_are_flagged(text: str, match: str | None) -> None:
    found = findings_with(LintCode.LOREM_IPSUM, text)

    assert len(found) == 1
    assert found[0].match == (match if match is not None else text.rstrip("."))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("DO NOT SEND", "DO NOT SEND"),
        ("Do not send yet", "Do not send"),
        ("Don't send!", "Don't send"),
        ("don’t send", "don’t send"),
        ("[do not send] promo", "do not send"),
        ("NIE WYSYŁAĆ", "NIE WYSYŁAĆ"),
        ("Nie wysyłać jeszcze", "Nie wysyłać"),
        ("Bitte nicht senden", "nicht senden"),
        ("Ne pas envoyer", "Ne pas envoyer"),
        ("No enviar", "No enviar"),
        ("Internal only", "Internal only"),
        ("For internal use only: new rates", "For internal use only"),
        ("DO NOT SEND Nowa oferta kredytu", "DO NOT SEND"),
    ],
)
def test_do_not_send_instructions_are_flagged(text: str, match: str) -> None:
    found = findings_with(LintCode.DO_NOT_SEND, text)

    assert [finding.match for finding in found] == [match]


@pytest.mark.parametrize(
    "text",
    [
        "Nie wysyłaj nikomu kodów BLIK",
        "Don't send your PIN to anyone",
        "Do not send money to strangers",
        "NIE WYSYŁAJ NIKOMU KODU SMS",
    ],
)
def test_security_advice_is_not_a_do_not_send_instruction(text: str) -> None:
    assert lint_content({"body": text}) == []


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[TEST] Nowa oferta", "[TEST]"),
        ("(test) Promocja", "(test)"),
        ("TEST: nowa oferta", "TEST:"),
        ("Test - oferta", "Test -"),
        ("DRAFT", "DRAFT"),
        ("DRAFT: nowa oferta", "DRAFT"),
        ("Nowa oferta DRAFT", "DRAFT"),
        ("[draft] oferta", "[draft]"),
        ("[WIP] Promo", "[WIP]"),
        ("***TEST***", "***TEST***"),
        ("[Testowa] oferta", "[Testowa]"),
        ("TODO: real copy", "TODO"),
    ],
)
def test_test_markers_are_flagged(text: str, match: str) -> None:
    found = findings_with(LintCode.TEST_MARKER, text)

    assert [finding.match for finding in found] == [match]


def test_a_marker_is_explained_once_not_also_as_a_word() -> None:
    assert [finding.code for finding in lint_content({"title": "[TEST] Nowa oferta"})] == [
        LintCode.TEST_MARKER
    ]


@pytest.mark.parametrize("text", ["DRAFT BEER FESTIVAL", "TODO AL 50% ESTE FIN DE SEMANA"])
def test_uppercase_words_in_all_caps_copy_are_not_markers(text: str) -> None:
    assert lint_content({"title": text}) == []


@pytest.mark.parametrize(
    ("title", "body"),
    [
        ("Test", "test"),
        ("Nowa oferta", "nowa oferta!"),
        ("Promocja  -20%", "promocja -20 %"),
        ("Hello", " HELLO. "),
        ("Kredyt hipoteczny", "Kredyt\nhipoteczny"),
    ],
)
def test_identical_title_and_body_are_flagged(title: str, body: str) -> None:
    found = [
        finding
        for finding in lint_title_body(title, body)
        if finding.code == LintCode.IDENTICAL_TITLE_BODY
    ]

    assert [(finding.field, finding.match) for finding in found] == [("body", body.strip())]


def test_identical_title_and_body_are_compared_per_locale_and_platform() -> None:
    findings = lint_content(
        {
            "title": "Nowa oferta",
            "body": "Sprawdź nowe oprocentowanie lokat.",
            "locales.de.title": "Neues Angebot",
            "locales.de.body": "neues angebot",
            "ios.title": "Oferta",
            "android.body": "Oferta",
        }
    )

    assert [(finding.code, finding.field) for finding in findings] == [
        (LintCode.IDENTICAL_TITLE_BODY, "locales.de.body")
    ]


@pytest.mark.parametrize("text", ["...", "???", "1", "A", "!", "x.", "42", " - "])
def test_too_short_titles_and_bodies_are_flagged(text: str) -> None:
    found = findings_with(LintCode.TOO_SHORT, text, field="title")

    assert [finding.match for finding in found] == [text.strip()]


@pytest.mark.parametrize(
    ("field", "text"),
    [("title", "OK"), ("title", "🎁"), ("body", ""), ("body", "   "), ("data.step", "1")],
)
def test_short_but_deliberate_content_is_not_too_short(field: str, text: str) -> None:
    assert findings_with(LintCode.TOO_SHORT, text, field=field) == []


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("aaaa", "aaaa"),
        ("Nooooo", "ooooo"),
        ("AAAaa", "AAAaa"),
        ("Super!!!!!!!", "!!!!!!!"),
        ("??????", "??????"),
        ("------", "------"),
        ("Wow......", "......"),
    ],
)
def test_repeated_characters_are_flagged(text: str, match: str) -> None:
    found = findings_with(LintCode.REPEATED_CHARACTER, text)

    assert [finding.match for finding in found] == [match]


@pytest.mark.parametrize("text", ["Wow!!!", "Sooo good", "🔥🔥🔥🔥🔥🔥", "1 000 000 zł", "....."])
def test_emphasis_within_bounds_is_not_repeated_character(text: str) -> None:
    assert findings_with(LintCode.REPEATED_CHARACTER, text) == []


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("https://staging.bank.pl/offers", "staging.bank.pl"),
        ("http://localhost:8000/x", "localhost:8000"),
        ("https://example.com/promo", "example.com"),
        ("http://192.168.0.10/app", "192.168.0.10"),
        ("https://app.test/offer", "app.test"),
        ("https://uat.shop.example.org", "uat.shop.example.org"),
    ],
)
def test_links_to_test_environments_are_flagged(text: str, match: str) -> None:
    found = findings_with(LintCode.TEST_LINK, text, field="deep_link")

    assert [finding.match for finding in found] == [match]


def test_field_paths_are_carried_into_findings() -> None:
    fields = {
        "ios.title": "test",
        "android.body": "Cześć {{name}}",
        "locales.pl.title": "ęśąćż",
        "data.promo": "lorem ipsum",
        "deep_link": "https://localhost/offers",
        "locales.en.body": "Your statement is ready",
    }

    findings = lint_content(fields)

    assert [(finding.field, finding.code) for finding in findings] == [
        ("ios.title", LintCode.PLACEHOLDER_WORD),
        ("android.body", LintCode.TEMPLATE_VARIABLE),
        ("locales.pl.title", LintCode.DIACRITICS_ONLY),
        ("data.promo", LintCode.LOREM_IPSUM),
        ("deep_link", LintCode.TEST_LINK),
    ]
    for finding in findings:
        assert finding.message.startswith(finding.field)
        assert f'"{finding.match}"' in finding.message


def test_data_values_and_links_are_identifiers_not_prose() -> None:
    fields = {
        "data.offer_id": "123456",
        "data.flags": "aaaa",
        "data.step": "1",
        "data.screen": "todo_list",
        "deep_link": "bank://offers/123456?ref=push",
    }

    assert lint_content(fields) == []


def test_findings_within_a_field_follow_the_text() -> None:
    findings = lint_content({"body": "asdf then {{name}} then TBD"})

    assert [finding.match for finding in findings] == ["asdf", "{{name}}", "TBD"]


def test_lint_is_deterministic() -> None:
    fields = {
        "title": "[TEST] ęśąćż asdf",
        "body": "Lorem ipsum {{name}} DO NOT SEND!!!!!!",
        "data.x": "https://staging.bank.pl/:id",
    }

    first = lint_content(fields)

    assert first
    assert all(lint_content(dict(fields)) == first for _ in range(5))


def test_findings_are_frozen_and_serialisable() -> None:
    finding = lint_title_body("test", "Nowa oferta")[0]

    assert finding.model_dump() == {
        "code": "placeholder_word",
        "field": "title",
        "match": "test",
        "message": finding.message,
    }
    with pytest.raises(ValidationError):
        finding.match = "other"  # type: ignore[misc]


# --- real campaigns must pass ------------------------------------------------------------------

LEGITIMATE_NOTIFICATIONS = [
    # Polish
    ("Twoja karta została zablokowana", "Ze względów bezpieczeństwa zablokowaliśmy kartę "
     "kończącą się na 4821. Zadzwoń do nas, aby ją odblokować."),
    ("Nowa oferta kredytu hipotecznego", "Sprawdź oprocentowanie od 6,85% – rata niższa "
     "nawet o 300 zł miesięcznie."),
    ("Przelew przychodzący: 1 250,00 zł", "Na Twoje konto wpłynęło 1 250,00 zł od Jana "
     "Kowalskiego."),
    ("Wyciąg za marzec jest gotowy", "Zaloguj się, aby zobaczyć wyciąg."),
    ("Uwaga na oszustów", "Nie wysyłaj nikomu kodów BLIK ani haseł. Bank nigdy o nie nie prosi."),
    ("Próba logowania na Twoje konto", "Jeśli to nie Ty, zmień hasło w aplikacji."),
    ("Żółć i granat – kolory sezonu 👗", "Nowa kolekcja już w sklepach. Rabat -20% tylko do "
     "niedzieli!"),
    ("Kod rabatowy WIOSNA25 🌷", "Użyj kodu przy kasie i zapłać mniej za zakupy powyżej 150 zł."),
    ("Bar mleczny przy ul. Świętokrzyskiej", "Zjedz obiad za 19,99 zł z kartą lojalnościową."),
    ("Bartek, masz nową wiadomość", "Doradca odpowiedział na Twoje pytanie o lokatę."),
    ("Płatność kartą ****1234", "Zapłaciłeś 54,30 zł w sklepie Żabka."),
    ("Spłata raty: 1234,56 zł", "Rata kredytu zostanie pobrana jutro."),
    ("Ostatni dzień promocji ⏰", "Darmowa dostawa dla zamówień od 99 zł – tylko dziś!"),
    ("ABC oszczędzania", "Poznaj 5 prostych sposobów na domowy budżet."),
    ("Konkurs z nagrodami 🎁", "Weź udział w konkursie i wygraj 1 000 000 zł!"),
    ("🎁", "Masz nową nagrodę w programie lojalnościowym."),
    ("Zamówienie #A1234 wysłane", "Paczka dotrze jutro między 10:00 a 14:00."),
    ("Hasło zostało zmienione", "Jeśli to nie Ty, wejdź na https://www.bank.pl/pomoc"),
    ("Oferta dla Ciebie, Anno", "Kredyt gotówkowy z RRSO 9,9%. Sprawdź szczegóły."),
    ("TomTom GO w super cenie", "Nawigacja z mapami Europy za 499 zł."),
    # German
    ("Ihre Karte wurde gesperrt", "Bitte wenden Sie sich an unseren Kundenservice unter "
     "0800 123 456."),
    ("Jetzt 30 Tage kostenlos testen", "Premium-Konto ohne Kontoführungsgebühr."),
    ("Barzahlung oder Karte?", "Sie haben die Wahl – bar oder mit dem Handy bezahlen."),
    ("Testsieger bei Stiftung Warentest", "Unser Girokonto wurde mit „sehr gut“ bewertet."),
    ("Wer gewinnt das Finale?", "Tippen Sie jetzt und sichern Sie sich 10 € Bonus."),
    ("Ihr Kontoauszug ist da", "Melden Sie sich an, um ihn herunterzuladen."),
    # French
    ("Votre virement de 250,00 € a été reçu", "Consultez le détail dans votre espace client."),
    ("Essai gratuit de 30 jours", "Découvrez notre offre Premium sans engagement."),
    ("Attestation de compte disponible", "Téléchargez-la depuis l'application."),
    ("Couscous, bonbons et pique-nique ☀️", "Tout pour l'été à prix réduits dans votre magasin."),
    # Spanish
    ("Todo a mitad de precio", "Solo este fin de semana en todas nuestras tiendas."),
    ("Prueba gratis durante 30 días", "Cancela cuando quieras, sin compromiso."),
    ("Tu tarjeta ha sido bloqueada", "Llámanos al 900 100 200 para desbloquearla."),
    ("¡Nuevo concurso! 🏆", "Participa y gana un viaje para dos personas."),
    # Portuguese
    ("Sua fatura está disponível", "Acesse o app para ver os detalhes e pagar com Pix."),
    ("Experimente grátis por 7 dias", "Ofertas exclusivas para clientes."),
    # Italian
    ("Prova gratis per 30 giorni", "Nessun costo di attivazione."),
    ("Il tuo bonifico è stato accreditato", "Importo: 1.500,00 €."),
    # Czech
    ("Čtvrtletní výpis je připraven", "Přihlaste se do aplikace a stáhněte si ho."),
    # Russian
    ("Проверка безопасности", "Подтвердите вход в приложение, если это были вы."),
    ("Ваш платёж выполнен", "Списано 3 500 ₽ с карты •• 7788."),
    # Ukrainian
    ("Перевірка безпеки", "Ваш платіж успішно виконано."),
    # English
    ("Join our contest 🎉", "Share your testimony and win a barbecue set for your garden."),
    ("Free samples of our new menu", "Visit any store this weekend."),
    ("Your card has been blocked", "Don't send your PIN or passwords to anyone. Call us on "
     "0800 555 0199."),
    ("Happy hour at the bar 🍹", "Two cocktails for the price of one from 5pm."),
    ("Payment received", "We received £1,234.56 from ACME Ltd."),
    ("Black Friday is here!!!", "Up to 70% off everything — today only."),
    ("Footwear sale 👟", "Football boots from £19.99."),
    ("Your statement is ready", "Log in to view your statement for March."),
    ("Security alert", "New sign-in from Chrome on Windows at 10:30. Wasn't you? Secure your "
     "account."),
    ("Mama's Day gift ideas 💐", "Treat mama with 15% off flowers."),
    ("DRAFT BEER FESTIVAL", "ALL DRAFT BEERS -50% THIS WEEKEND ONLY"),
    ("Offer ends at 23:59", "Save 100% on delivery fees with code FREESHIP."),
    ("Mississippi river cruise", "Book now and save 25%."),
    # Vietnamese, Turkish, Greek
    ("Ưu đãi đặc biệt", "Giảm 50% cho đơn hàng đầu tiên."),
    ("Kartınız bloke edildi", "Akıllı ışığı keşfedin ve %10 indirim kazanın."),
    ("Η κάρτα σας μπλοκαρίστηκε", "Καλέστε μας για βοήθεια."),
]  # fmt: skip


@pytest.mark.parametrize(("title", "body"), LEGITIMATE_NOTIFICATIONS)
def test_legitimate_notifications_produce_no_findings(title: str, body: str) -> None:
    assert lint_title_body(title, body) == []


def test_legitimate_full_content_produces_no_findings() -> None:
    fields = {
        "title": "Nowa oferta kredytu hipotecznego",
        "body": "Sprawdź oprocentowanie od 6,85%.",
        "ios.title": "Nowa oferta 🏠",
        "android.body": "Sprawdź oprocentowanie od 6,85% w aplikacji.",
        "locales.en.title": "New mortgage offer",
        "locales.en.body": "Rates from 6.85%. Tap to see details.",
        "data.offer_id": "MORTGAGE-2024-07",
        "data.campaign": "summer_mortgage",
        "deep_link": "https://www.bank.pl/oferty/kredyt-hipoteczny?utm_source=push",
    }

    assert lint_content(fields) == []


# --- properties --------------------------------------------------------------------------------

FIELD_PATHS = st.sampled_from(
    ["title", "body", "ios.title", "android.body", "locales.pl.title", "data.key", "deep_link"]
)
INTERESTING = st.text(
    alphabet=st.sampled_from(
        [
            *"tesTSaqwdfzxyk{}%$_[]<>():;/*!.-1234 \n",
            *("ę", "ś", "ą", "ł", "ß", "ﬁ", "\u0301", "\u200b", "İ", "ｔ", "🎉", "’"),
        ]
    ),
    max_size=40,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(FIELD_PATHS, st.one_of(st.text(max_size=60), INTERESTING), max_size=5))
def test_lint_never_raises_and_matches_are_exact_substrings(fields: dict[str, str]) -> None:
    findings = lint_content(fields)

    valid_codes = {code.value for code in LintCode}
    for finding in findings:
        assert finding.field in fields
        assert finding.code in valid_codes
        assert finding.match in fields[finding.field]
        assert finding.message
    assert lint_content(fields) == findings
