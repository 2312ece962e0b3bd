"""The study runner in a real browser: Playwright (from PyPI) drives Debian's /usr/bin/chromium —
never a downloaded browser — through the whole study for several participants in different
conditions: a failed comprehension check, a second failure (excluded), a reload and a return
mid-study, a double click, and a too-fast participant whose recorded seconds are checked.
Screenshots of every page type go to test-artifacts/study_browser/ (TWO4TWO_ARTIFACTS overrides)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from browser_fixtures import artifacts, launch, require_browser

require_browser({"flask": "the study app needs it: pip install -e '.[study]'", "waitress": "the study app needs it: pip install -e '.[study]'"})

from study_fixtures import ANSWER_KEY, COMPREHENSION, ManualClock, make_bundle, running_server  # noqa: E402
from two4two.cli import main  # noqa: E402
from two4two.study.exclusions import DEFAULT_RULES, apply_exclusions  # noqa: E402
from two4two.study.responses import read_responses  # noqa: E402
from two4two.study.app import create_app  # noqa: E402
from two4two.study.bundle import ATTRIBUTES, CONDITIONS, load_bundle  # noqa: E402

pytestmark = pytest.mark.slow  # drives Chromium

ARTIFACTS = artifacts("study_browser")


@pytest.fixture(scope="module")
def browser():
    with launch() as browser:
        yield browser


@pytest.fixture
def study(tmp_path):
    bundle_dir = make_bundle(tmp_path / "bundle")
    clock = ManualClock()
    db = tmp_path / "responses.sqlite"
    app = create_app(load_bundle(bundle_dir), db, clock=clock, rng=random.Random(1))
    with running_server(app) as url:
        yield url, clock, db, bundle_dir, tmp_path


class Participant:
    """One participant: their own browser context (cookies), clicking through the pages."""

    def __init__(self, browser, url: str, clock: ManualClock, shots: dict | None = None):
        self.context = browser.new_context(viewport={"width": 900, "height": 700})
        self.page = self.context.new_page()
        self.url, self.clock, self.shots = url, clock, shots
        self.condition: str | None = None
        self.external: list[str] = []
        self.page.on("request", lambda r: None if r.url.startswith(url) else self.external.append(r.url))

    def kind(self) -> str:
        return self.page.locator("main").get_attribute("data-page")

    def shot(self, name: str) -> None:
        if self.shots is not None and name not in self.shots:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            path = ARTIFACTS / f"{name}.png"
            self.page.screenshot(path=str(path), full_page=True)
            self.shots[name] = path

    def start(self) -> None:
        self.page.goto(self.url + "/")
        assert self.kind() == "consent"
        self.shot("consent")
        self.page.get_by_role("button", name="I agree and want to take part").click()

    def comprehension(self, correct: bool) -> None:
        name = self.page.locator("input[type=radio]").first.get_attribute("name")
        self.condition = next(c for c in CONDITIONS if name.startswith(f"q_{c}_"))
        for i, (_, _, choices, answer) in enumerate(COMPREHENSION[self.condition]):
            choice = answer if correct or i > 0 else next(c for c in choices if c != answer)
            self.page.locator(f"fieldset:nth-of-type({i + 1})").get_by_label(choice, exact=True).check()
        self.page.get_by_role("button", name="Submit answers").click()

    def question(self, answer: str, text: str, seconds: float) -> str:
        attribute = self.page.locator("input[name=attribute]").get_attribute("value")
        self.page.get_by_label(answer, exact=True).check()
        self.page.locator("textarea").fill(f"{text} ({attribute})")
        self.clock.advance(seconds)
        self.page.get_by_role("button", name="Submit answer").click()
        return attribute

    def run(self, answers: dict[str, str], text: str, seconds: float = 40.0, fail: int = 0, on_question=None) -> str:
        """Consent to the last page; returns the final page kind."""
        self.start()
        failures = 0
        while True:
            kind = self.kind()
            if kind in ("complete", "excluded"):
                self.shot(kind)
                return kind
            if kind == "tutorial" and failures:
                self.shot("tutorial_retry")
            self.shot(kind)
            if kind == "comprehension":
                self.comprehension(correct=failures >= fail)
                failures += 1
            elif kind == "question":
                attribute = self.page.locator("input[name=attribute]").get_attribute("value")
                if on_question and on_question(self, attribute):
                    continue
                self.question(answers[attribute], text, seconds)
            else:
                self.clock.advance(10)
                self.page.get_by_role("button").click()

    def close(self) -> None:
        self.context.close()


def test_participants_complete_the_study_in_chromium(browser, study):
    url, clock, db, bundle_dir, tmp = study
    shots: dict[str, Path] = {}
    answers = {a: "relevant" if i % 2 == 0 else "irrelevant" for i, a in enumerate(ATTRIBUTES)}

    # 1. A participant who passes everything first time (screenshots of each page type).
    first = Participant(browser, url, clock, shots)
    assert first.run(answers, "First participant thinks so") == "complete"
    code = first.page.get_by_test_id("completion-code").inner_text()
    assert len(code) == 8 and first.external == []  # nothing fetched from anywhere else

    # 2. Fails the comprehension check once (back to the tutorial with a notice), reloads the page
    #    mid-question, comes back in a new tab later, and double-clicks a submit button.
    second = Participant(browser, url, clock, shots)

    def reload_and_return(p: Participant, attribute: str) -> bool:
        if attribute == "colour" and not getattr(p, "reloaded", False):
            p.reloaded = True
            p.page.get_by_label("irrelevant", exact=True).check()
            p.page.reload()
            assert p.kind() == "question" and p.page.locator("input[name=attribute]").get_attribute("value") == "colour"
            p.page.close()  # leaves; comes back later in a new tab of the same browser
            p.page = p.context.new_page()
            p.page.goto(url + "/")
            assert p.kind() == "question" and p.page.locator("input[name=attribute]").get_attribute("value") == "colour"
            return True
        if attribute == "shape" and not getattr(p, "double_clicked", False):
            p.double_clicked = True
            p.page.get_by_label(answers["shape"], exact=True).check()
            p.page.locator("textarea").fill("Second participant thinks so (shape)")
            clock.advance(40)
            with p.page.expect_navigation(url=url + "/study"):
                p.page.get_by_role("button", name="Submit answer").dblclick()
            assert p.page.locator("input[name=attribute]").get_attribute("value") == "rotation_bending"
            return True
        return False

    assert second.run(answers, "Second participant thinks so", fail=1, on_question=reload_and_return) == "complete"
    assert second.page.get_by_test_id("completion-code").inner_text() != code

    # 3. Too fast: 2 s per question page. Stored as answered; the analysis excludes by its rule.
    fast = Participant(browser, url, clock, shots)
    assert fast.run(answers, "Fast participant clicks", seconds=2.0) == "complete"

    # 4. Fails the comprehension check twice: excluded politely, no completion code.
    excluded = Participant(browser, url, clock, shots)
    assert excluded.run(answers, "never asked", fail=2) == "excluded"
    assert excluded.page.get_by_test_id("completion-code").count() == 0

    # 5. A browser whose cookie was tampered with gets a clear 403 page.
    stranger = Participant(browser, url, clock, shots)
    stranger.context.add_cookies([{"name": "two4two_participant", "value": "A" * 43, "url": url}])
    response = stranger.page.goto(url + "/study")
    assert response.status == 403 and "no place in the study" in stranger.page.get_by_test_id("error-message").inner_text()
    stranger.shot("error_403")

    assert {first.condition, second.condition, fast.condition} == set(CONDITIONS)  # balanced, one each
    out = tmp / "responses.csv"
    assert main(["study", "responses", "--db", str(db), "--bundle", str(bundle_dir), "-o", str(out)]) == 0
    responses = read_responses(out)
    assert len(responses) == 3 * len(ATTRIBUTES)
    for who, condition, failures, seconds in [
        ("First", first.condition, 0, 40.0), ("Second", second.condition, 1, 40.0), ("Fast", fast.condition, 0, 2.0)
    ]:
        own = [r for r in responses if r.justification.startswith(f"{who} participant")]
        assert [r.attribute for r in own] == list(ATTRIBUTES)
        assert {r.condition for r in own} == {condition} and {r.comprehension_failures for r in own} == {failures}
        assert [r.seconds for r in own] == [seconds] * len(ATTRIBUTES)
        assert {r.attribute: r.answer for r in own} == answers and all(r.expected == ANSWER_KEY[r.attribute] for r in own)
    fast_id = next(r.participant_id for r in responses if r.justification.startswith("Fast"))
    assert apply_exclusions(responses, DEFAULT_RULES).participant_reasons == {fast_id: ["answered_in_under_30s"]}

    expected_shots = {"consent", "introduction", "tutorial", "comprehension", "explanation", "question",
                      "complete", "tutorial_retry", "excluded", "error_403"}
    assert set(shots) == expected_shots and all(p.stat().st_size > 1000 for p in shots.values())
    for p in (first, second, fast, excluded, stranger):
        p.close()


def test_server_side_checks_hold_when_the_browser_does_not_enforce_them(browser, study):
    """The form's maxlength is only a hint: a too long justification still gets a clear 400 page
    that keeps the text, and nothing is stored."""
    url, clock, db, *_ = study
    p = Participant(browser, url, clock)
    p.start()
    while p.kind() != "question":
        if p.kind() == "comprehension":
            p.comprehension(True)
        else:
            p.page.get_by_role("button").click()
    p.page.get_by_label("relevant", exact=True).check()
    p.page.locator("textarea").evaluate("t => t.removeAttribute('maxlength')")
    p.page.locator("textarea").fill("y" * 2100)
    with p.page.expect_navigation() as nav:
        p.page.get_by_role("button", name="Submit answer").click()
    assert nav.value.status == 400
    assert "at most 2000 are allowed" in p.page.get_by_test_id("error").inner_text()
    assert p.page.locator("textarea").input_value() == "y" * 2100
    assert p.page.locator("input[value=relevant]").is_checked()
    import sqlite3

    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM answers").fetchone() == (0,)
    conn.close()
    p.close()
