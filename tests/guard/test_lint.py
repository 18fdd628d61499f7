"""Content lint: test-looking content is caught and explained, real campaigns pass untouched."""

from __future__ import annotations

import sys
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.campaigns.schemas import Content
from app.guard.confusables import CONFUSABLES, LEET, fold_char, skeleton
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
        ("Kod: xxx", "xxx"),
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
        ("Hej *|FNAME|*", "*|FNAME|*"),
        ("Dzień dobry %NAME%", "%NAME%"),
        ("Witaj <%= name %>!", "<%= name %>"),
        ("Witaj <%=name%>", "<%=name%>"),
        ("Hello $FIRST_NAME$", "$FIRST_NAME$"),
        ("Cześć $imie", "$imie"),
        ("Hi %%FirstName%%", "%%FirstName%%"),
        ("Dear {!Contact.FirstName}", "{!Contact.FirstName}"),
        ("Witaj %{first_name}", "%{first_name}"),
        ("Hi {$name}", "{$name}"),
        ("Cześć [[imie]]", "[[imie]]"),
        ("Cześć «Imię»", "«Imię»"),
        ("Dear «FirstName»", "«FirstName»"),
        ("Kwota: xxx zł", "xxx zł"),
        ("Rabat XX%", "XX%"),
        ("Lokata X,XX%", "X,XX%"),
        ("Tylko do DD.MM.RRRR", "DD.MM.RRRR"),
        ("Oferta ważna do dd/mm/yyyy", "dd/mm/yyyy"),
        ("Start o HH:MM", "HH:MM"),
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
    [
        "Rabat 20%", "100% zwrotu", "Godzina 10:30", "Uwaga: nowa oferta", "Cena 9,99 zł",
        "A < B", "20% taniej, 30% szybciej", "Zapłać $5 i $10", "« Offre spéciale »",
        "XX wiek", "Wersja 10.2.1.5", "Raty 0% do 2027",
    ],
)  # fmt: skip
def test_prices_times_and_colons_are_not_template_variables(text: str) -> None:
    assert findings_with(LintCode.TEMPLATE_VARIABLE, text) == []


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("Lorem ipsum", "Lorem ipsum"),
        ("lorem", "lorem"),
        # ǿ decomposes to ø, which folds on to o: caught as "Lørem" is.
        ("Lǿrem ipsum", "Lǿrem ipsum"),
        ("Lørem ipsum", "Lørem ipsum"),
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


# --- disguised, joined and spelled-out test words ----------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "t\u0435st",  # Cyrillic е
        "\u0422\u0415\u0405\u0422",  # Cyrillic ТЕЅТ
        "\u0422\u0435st push",  # Cyrillic Те
        "\u03a4est",  # Greek capital tau
        "t\u03b5st",  # Greek epsilon
        "t\u0435\u0455t",  # Cyrillic е and ѕ
        "ＴＥＳＴ",
        "𝐭𝐞𝐬𝐭",
        "𝕥𝕖𝕤𝕥",
        "𝓣𝓮𝓼𝓽",
        "ᴛᴇꜱᴛ",
        "t3st",
        "7est",
        "te5t",
        "T35T",
        "te$t",
        "t3st1",
        "tes7",
        "te57",
        "t\u0435st1",
        "t\u0435stowa wiadomość",
    ],
)
def test_look_alike_and_leetspeak_spellings_of_test_are_flagged(text: str) -> None:
    found = findings_with(LintCode.PLACEHOLDER_WORD, f"Nowa oferta {text} dziś")

    assert [finding.match for finding in found] == [text]
    assert "look-alike characters or digits" in found[0].message


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("testpush", "testpush"),
        ("pushtest", "pushtest"),
        ("PushTest", "PushTest"),
        ("qatest", "qatest"),
        ("testowypush", "testowypush"),
        ("testtesttest", "testtesttest"),
        ("TEST123", "TEST123"),
        ("tesst", "tesst"),
        ("t e s t", "t e s t"),
        ("t.e.s.t", "t.e.s.t"),
        ("T-E-S-T", "T-E-S-T"),
        ("T E S T O W A", "T E S T O W A"),
    ],
)
def test_joined_stretched_and_spelled_out_test_words_are_flagged(text: str, match: str) -> None:
    found = findings_with(LintCode.PLACEHOLDER_WORD, f"Oferta {text} karty")

    assert [finding.match for finding in found] == [match]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("Próbne powiadomienie", "Próbne powiadomienie"),
        ("Testy push", "Testy"),
        ("próba push", "próba push"),
        ("testowanko", "testowanko"),
        ("testowa wiadomość", "testowa wiadomość"),
        ("tescik", "tescik"),
        ("Testujemy nowy moduł", "Testujemy"),
        ("testuje wysyłkę", "testuje"),
        ("Powiadomienie kontrolne", "Powiadomienie kontrolne"),
        ("Próbna wysyłka", "Próbna wysyłka"),
        ("Sprawdzenie polskich znaków", "Sprawdzenie polskich znaków"),
        ("Czy działa?", "Czy działa"),
        ("Czy to dochodzi", "Czy to dochodzi"),
        ("Sprawdzamy czy dochodzą powiadomienia", "czy dochodzą"),
        ("raz dwa trzy", "raz dwa trzy"),
        ("Proszę zignorować", "Proszę zignorować"),
        ("Przykładowy tytuł", "Przykładowy tytuł"),
        ("Tu będzie treść", "Tu będzie treść"),
        ("QA only", "QA only"),
        ("Is this working?", "Is this working"),
        ("Test your push", "Test"),
    ],
)
def test_what_testers_type_is_flagged(text: str, match: str) -> None:
    found = findings_with(LintCode.PLACEHOLDER_WORD, text)

    assert [finding.match for finding in found] == [match]


@pytest.mark.parametrize(
    "text", ["Test your knowledge with our quiz", "Test your luck in our contest", "Test yourself"]
)
def test_the_english_imperative_still_needs_an_override(text: str) -> None:
    # Deliberate (see the module docstring): it is spelled like the label "Test ...".
    assert [finding.match for finding in findings_with(LintCode.PLACEHOLDER_WORD, text)] == ["Test"]


def test_a_tester_checking_delivery_is_flagged_twice_over() -> None:
    found = findings_with(LintCode.PLACEHOLDER_WORD, "Sprawdzam czy działa")

    assert [finding.match for finding in found] == ["Sprawdzam", "czy działa"]


@pytest.mark.parametrize(
    ("title", "body"),
    [("Title", "Body"), ("Tytuł", "Treść"), ("Tytuł powiadomienia", "Treść powiadomienia")],
)
def test_field_names_typed_as_content_are_flagged(title: str, body: str) -> None:
    findings = lint_title_body(title, body)

    assert [(f.field, f.code, f.match) for f in findings] == [
        ("title", LintCode.PLACEHOLDER_WORD, title),
        ("body", LintCode.PLACEHOLDER_WORD, body),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "Test-drive the new card today",
        "Test drive our new app design",
        "Put your budget to the test",
        "Contest winners announced",
        "Latest offers",
        "Protest rolników",
        "Testament i sprawy spadkowe",
        "Your documents attest your income",
        "Przetestuj nową kartę",
        "Testuj za darmo przez 30 dni",
        "Okres testowy bez opłat",
        "Umów jazdę testową",
        "Jazda próbna nowym autem",
        "Sprawdź, czy dotarł przelew",
        "Sprawdzamy Twój wniosek",
        "Wyniki za Q4",
        "Abonament 5G i 3D Secure",
        "Rating AAA dla listów zastawnych",
        "Etap III programu",
        "Wejdź na www.bank.pl",
        "Napisz: kontakt@bank.pl",
        "Speed check on https://www.speedtest.net",
        "Nowa wersja 10.2.1.5",
        "Η κάρτα σας μπλοκαρίστηκε",
        "Ваш платёж выполнен",
        "Тесто для вареников",
    ],
)
def test_real_copy_near_test_words_passes(text: str) -> None:
    assert lint_content({"body": text}) == []


@pytest.mark.parametrize(
    ("text", "code", "match"),
    [
        ("aaa", LintCode.REPEATED_CHARACTER, "aaa"),
        ("Nowa oferta kkk", LintCode.REPEATED_CHARACTER, "kkk"),
        ("AAA", LintCode.REPEATED_CHARACTER, "AAA"),
        ("asdf", LintCode.KEYBOARD_MASH, "asdf"),
        ("qwerty", LintCode.KEYBOARD_MASH, "qwerty"),
        ("xxx", LintCode.PLACEHOLDER_WORD, "xxx"),
        ("dupa", LintCode.PLACEHOLDER_WORD, "dupa"),
        ("ping", LintCode.PLACEHOLDER_WORD, "ping"),
        ("lorem ipsum", LintCode.LOREM_IPSUM, "lorem ipsum"),
    ],
)
def test_fillers_are_flagged(text: str, code: LintCode, match: str) -> None:
    assert [finding.match for finding in findings_with(code, text)] == [match]


@pytest.mark.parametrize(
    ("field", "text", "match"),
    [
        ("deep_link", "https://testapi.bank.pl/x", "testapi.bank.pl"),
        ("deep_link", "https://uat-api.bank.pl/x", "uat-api.bank.pl"),
        ("deep_link", "https://api-test.bank.pl/x", "api-test.bank.pl"),
        ("deep_link", "https://stg2.bank.pl/x", "stg2.bank.pl"),
        ("deep_link", "https://pre-prod.bank.pl/x", "pre-prod.bank.pl"),
        ("deep_link", "https://bank-uat.pl/x", "bank-uat.pl"),
        ("deep_link", "http://127.1/x", "127.1"),
        ("deep_link", "http://0x7f000001/x", "0x7f000001"),
        ("deep_link", "http://2130706433/x", "2130706433"),
        ("deep_link", "http://0177.0.0.1/x", "0177.0.0.1"),
        ("deep_link", "http://[::1]:8000/x", "[::1]:8000"),
        ("deep_link", "http://[fd00::5]/x", "[fd00::5]"),
        ("deep_link", "http://10.1.2.3/x", "10.1.2.3"),
        ("deep_link", "http://172.20.0.4/x", "172.20.0.4"),
        ("deep_link", "https://bank.local/x", "bank.local"),
        ("deep_link", "https://bank.example/x", "bank.example"),
        ("deep_link", "https://ab12.ngrok-free.app/x", "ab12.ngrok-free.app"),
        ("deep_link", "staging.bank.pl/x", "staging.bank.pl"),
        ("deep_link", "//uat.bank.pl/x", "uat.bank.pl"),
        ("deep_link", "10.1.2.3", "10.1.2.3"),
        ("deep_link", "[::1]:8000/x", "[::1]:8000"),
        ("android.image_url", "https://staging-cdn.bank.pl/a.png", "staging-cdn.bank.pl"),
        ("android.image_url", "https://placehold.co/600x400", "placehold.co"),
        ("android.image_url", "https://picsum.photos/1080/540", "picsum.photos"),
        ("body", "Napisz na jan@uat.bank.pl", "uat.bank.pl"),
        ("body", "Zobacz 192.168.1.20/oferta", "192.168.1.20"),
    ],
)
def test_more_test_hosts_are_flagged(field: str, text: str, match: str) -> None:
    found = findings_with(LintCode.TEST_LINK, text, field=field)

    assert [finding.match for finding in found] == [match]


@pytest.mark.parametrize(
    "text",
    [
        "https://bank.pl/oferty/kredyt?utm_source=push",
        "https://latest.bank.pl/x",
        "https://devices.bank.pl/x",
        "https://contest.bank.pl/x",
        "https://www.speedtest.net/",
        "http://8.8.8.8/x",
        "https://cdn.bank.pl/push/latest-offers-1080.jpg",
        "bank://offers/123",
        "https://bank.pl/promo?utm_content=ab_test_b",
        "https://bank.pl/promo?variant=a-b-test",
        "123456",
        "10",
        "-1",
        "0",
    ],
)
def test_real_hosts_are_not_test_links(text: str) -> None:
    assert lint_content({"deep_link": text}) == []


def test_the_android_image_is_linted_through_the_content_fields() -> None:
    content = Content.model_validate(
        {
            "title": "Nowa karta",
            "body": "Zamów kartę wielowalutową",
            "android": {"image_url": "https://cdn.bank.pl/push/test.png"},
        }
    )

    findings = lint_content(content.text_fields())

    assert [(f.field, f.code, f.match) for f in findings] == [
        ("android.image_url", LintCode.PLACEHOLDER_WORD, "test")
    ]


# --- folding properties ------------------------------------------------------------------------

_LOOK_ALIKES: dict[str, list[str]] = {}
for _source, _latin in CONFUSABLES.items():
    _LOOK_ALIKES.setdefault(_latin, []).append(_source)
for _source, _latin in LEET.items():
    _LOOK_ALIKES.setdefault(_latin, []).append(_source)


def _spellings(letter: str) -> st.SearchStrategy[str]:
    return st.sampled_from(
        [
            letter,
            letter.upper(),
            chr(ord(letter) - ord("a") + 0xFF41),  # fullwidth
            chr(ord(letter) - ord("a") + 0x1D41A),  # mathematical bold
            *_LOOK_ALIKES.get(letter, []),
        ]
    )


# "7357" is a number, not a word: a disguise keeps at least two of its letters.
DISGUISED_TEST = (
    st.tuples(*(_spellings(letter) for letter in "test"))
    .map("".join)
    .filter(lambda word: sum(ch not in LEET for ch in word) >= 2)
)
REAL_WORDS = st.sampled_from(["Nowa", "oferta", "kredytu", "Your", "card", "BLIK", "dziś", ""])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
@example("Lǿrem ℏ")
def test_the_latin_skeleton_is_idempotent(text: str) -> None:
    once = skeleton(text)

    assert skeleton(once) == once


def test_folding_any_character_is_idempotent() -> None:
    """Every code point (2.5 s): a decomposition may end in a letter the special folds take
    further (ǿ → ø → o, ℏ → ħ → h); folding the result again must change nothing."""
    not_idempotent = [
        ch
        for ch in map(chr, range(sys.maxunicode + 1))
        if "".join(fold_char(part) for part in fold_char(ch)) != fold_char(ch)
    ]

    assert not_idempotent == []


@settings(max_examples=300, deadline=None)
@given(word=DISGUISED_TEST, before=REAL_WORDS, after=REAL_WORDS)
def test_any_disguise_of_test_is_still_caught(word: str, before: str, after: str) -> None:
    text = " ".join(part for part in (before, word, after) if part)

    found = findings_with(LintCode.PLACEHOLDER_WORD, text)

    assert [finding.match for finding in found] == [word]
