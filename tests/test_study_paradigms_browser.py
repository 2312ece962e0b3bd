"""Each trial paradigm in a real browser (Debian's Chromium under Playwright): a whole participant
run by clicking, a reload mid-trial that shows the same step again, answers given too fast that are
stored with their seconds and flagged, and a tampered request refused without a trace in the
database. Screenshots of each paradigm's trial page go to test-artifacts/study_paradigms/."""

from __future__ import annotations

import csv
import random

import pytest
from browser_fixtures import artifacts, launch, require_browser

require_browser({"flask": "the study app needs it: pip install -e '.[study]'", "waitress": "the study app needs it: pip install -e '.[study]'"})

from study_fixtures import (  # noqa: E402
    TRIAL_COMPREHENSION_ANSWER,
    TRIAL_CONDITIONS,
    ManualClock,
    db_dump,
    make_trial_bundle,
    running_server,
)
from two4two.cli import main  # noqa: E402
from two4two.study.app import create_app  # noqa: E402
from two4two.study.bundle import load_bundle  # noqa: E402

pytestmark = pytest.mark.slow  # drives Chromium

ARTIFACTS = artifacts("study_paradigms")


@pytest.fixture(scope="module")
def browser():
    with launch() as browser:
        yield browser


@pytest.mark.parametrize("paradigm", tuple(TRIAL_CONDITIONS))
def test_a_participant_runs_each_paradigm_in_chromium(browser, tmp_path, paradigm):
    from playwright.sync_api import expect

    bundle_dir = make_trial_bundle(tmp_path / "bundle", paradigm)
    bundle = load_bundle(bundle_dir)
    clock, db = ManualClock(), tmp_path / "responses.sqlite"
    with running_server(create_app(bundle, db, clock=clock, rng=random.Random(0))) as url:
        context = browser.new_context(viewport={"width": 900, "height": 800})
        page = context.new_page()
        external: list[str] = []
        page.on("request", lambda r: None if r.url.startswith(url) else external.append(r.url))
        page.goto(url + "/")
        page.get_by_role("button", name="I agree and want to take part").click()
        expect(page.locator("main")).to_have_attribute("data-page", "introduction")
        page.get_by_role("button").click()
        expect(page.locator("main")).to_have_attribute("data-page", "tutorial")
        page.get_by_role("button").click()
        page.get_by_label(TRIAL_COMPREHENSION_ANSWER, exact=True).check()
        page.get_by_role("button", name="Submit answers").click()
        expect(page.locator("main")).to_have_attribute("data-page", "trial")

        answered: list[tuple[str, str, str]] = []
        step = 0
        while page.locator("main").get_attribute("data-page") == "trial":
            trial = page.locator("input[name=trial]").get_attribute("value")
            shown = page.locator("input[name=step]").get_attribute("value")
            images = page.get_by_test_id("trial-image")
            assert images.count() >= 1 and all(images.nth(i).evaluate("i => i.naturalWidth") > 0 for i in range(images.count()))
            if step == 0:
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / f"{paradigm}_trial.png"), full_page=True)
            if step == 1:  # reload mid-trial: the same trial and step again
                page.reload()
                assert page.locator("input[name=trial]").get_attribute("value") == trial
                assert page.locator("input[name=step]").get_attribute("value") == shown
            if step == 2:  # a tampered request (another trial's id) from this participant's browser
                before = db_dump(db)
                other = next(t.id for t in bundle.trials if t.id != trial)
                seq = page.locator("input[name=seq]").get_attribute("value")
                response = context.request.post(url + "/study", form={"seq": seq, "trial": other, "step": shown, "answer": "Yes"},
                                                max_redirects=0)
                assert response.status == 400 and "is not allowed on this page" in response.text()
                assert db_dump(db) == before
            choices = page.get_by_test_id("choice")
            choice = choices.nth(step % choices.count())
            answer = choice.inner_text()
            clock.advance(0.2 if step % 3 == 0 else 2.0)  # every third answer too fast (the bundle's limit: 1 s)
            choice.click()
            answered.append((trial, shown, answer))
            step += 1
            page.wait_for_load_state()
        expect(page.locator("main")).to_have_attribute("data-page", "complete")
        assert len(page.get_by_test_id("completion-code").inner_text()) == 8 and external == []
        context.close()

    out = tmp_path / "responses.csv"
    assert main(["study", "responses", "--db", str(db), "--bundle", str(bundle_dir), "-o", str(out)]) == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["trial"], r["step"], r["answer"]) for r in rows] == answered  # every click stored once, in order
    assert [r["too_fast"] for r in rows] == ["1" if i % 3 == 0 else "0" for i in range(len(rows))]
    assert [float(r["seconds"]) for r in rows] == [0.2 if i % 3 == 0 else 2.0 for i in range(len(rows))]
    assert len({r["trial"] for r in rows}) == bundle.order.trials_per_participant
