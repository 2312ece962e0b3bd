"""The explorer in Debian's Chromium: choose an image and a method and see the map; move the slider
and see both perturbed images change, with the probability the model gives exactly those images;
a bad query parameter is a 400. Screenshot: test-artifacts/explorer_browser/explorer.png."""

from __future__ import annotations

import io
import re
import urllib.error
import urllib.request

import numpy as np
import pytest
from browser_fixtures import artifacts, launch, require_browser

require_browser({"flask": "pip install -e '.[study]'", "waitress": "pip install -e '.[study]'", "torch": "pip install -e '.[models]'",
                 "captum": "pip install -e '.[models]'"})

import torch  # noqa: E402
from playwright.sync_api import expect  # noqa: E402  (its waits run under the page's CSP, unlike wait_for_function)
from study_fixtures import running_server  # noqa: E402
from two4two.explorer.app import create_app  # noqa: E402
from two4two.explorer.session import ExplorerSession  # noqa: E402
from two4two.models.classifier import build_classifier  # noqa: E402
from two4two.models.training import predict_logits  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.models]
SIZE = 32


@pytest.fixture(scope="module")
def explorer(tmp_path_factory):
    from paint_worker import painted_test_split

    split = painted_test_split(tmp_path_factory.mktemp("explore_browser"), 12, 9, ["obj_color", "spherical"], ["right_legs", "spine"], SIZE)
    torch.manual_seed(1)
    model = build_classifier("small_cnn", width=4).eval()
    session = ExplorerSession(model, split)
    with running_server(create_app(session)) as url, launch() as browser:
        yield url, browser, session, model


def fetch_png(url: str) -> np.ndarray:
    from PIL import Image

    with urllib.request.urlopen(url) as response:
        return np.asarray(Image.open(io.BytesIO(response.read())))


def test_choosing_an_image_and_a_method_then_moving_the_slider(explorer):
    url, browser, session, model = explorer
    page = browser.new_page(viewport={"width": 1300, "height": 1100})
    external = []
    page.on("request", lambda r: None if r.url.startswith(url) else external.append(r.url))
    page.goto(url + "/")
    items = page.get_by_test_id("image-item")
    items.first.wait_for()
    assert items.count() == 12
    # the first page: every image as a thumbnail with its class and logit, wrong predictions marked
    thumbs = page.get_by_test_id("thumb")
    expect(thumbs).to_have_count(12)
    for k in range(12):
        expect(thumbs.nth(k).locator("img")).to_have_js_property("naturalWidth", SIZE)
    label = "stretchy" if session.labels[7] else "peaky"
    assert thumbs.nth(7).inner_text() == f"{label} · z = {session.logits[7]:.2f}"
    wrong = [k for k in range(12) if (session.logits[k] > 0) != bool(session.labels[k])]
    assert [k for k in range(12) if "wrong" in thumbs.nth(k).get_attribute("class")] == wrong
    shots = artifacts("explorer_browser")
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "first_page.png"), full_page=True)
    thumbs.nth(7).click()
    expect(page.get_by_test_id("title")).to_contain_text(session.params[7].id)
    expect(page.get_by_test_id("grid-view")).to_be_hidden()
    page.get_by_test_id("back").click()
    expect(page.get_by_test_id("grid-view")).to_be_visible()
    expect(page.get_by_test_id("selected")).to_be_hidden()
    # filter: only stretchy images remain
    page.locator("select[name=label]").select_option("stretchy")
    page.get_by_role("button", name="filter").click()
    expect(items).to_have_count(int(session.labels.sum()))
    page.locator("select[name=label]").select_option("any")
    page.get_by_role("button", name="filter").click()
    expect(items).to_have_count(12)

    items.nth(4).click()
    page.get_by_test_id("selected").wait_for()
    expect(page.get_by_test_id("probability")).to_have_attribute("data-value", re.compile(r"\d"))
    shown = float(page.get_by_test_id("probability").get_attribute("data-value"))
    assert shown == pytest.approx(session.probability(float(session.logits[4]), 4), abs=1e-9)

    page.get_by_test_id("method").select_option("gradient")
    expect(page.get_by_test_id("map")).to_have_attribute("src", re.compile(r"/map/gradient/4\.png$"))
    expect(page.get_by_test_id("map")).to_have_js_property("naturalWidth", SIZE)
    page.get_by_test_id("opacity").fill("30")
    assert page.get_by_test_id("map").evaluate("e => e.style.opacity") == "0.3"
    expect(page.get_by_test_id("curve-morf")).to_have_count(1)

    expect(page.get_by_test_id("slider")).to_have_attribute("data-shown", "0")
    before = {o: page.get_by_test_id(f"{o}-image").get_attribute("src") for o in ("morf", "lerf")}
    page.get_by_test_id("slider").fill("40")
    expect(page.get_by_test_id("slider")).to_have_attribute("data-shown", "40")
    for order in ("morf", "lerf"):
        src = page.get_by_test_id(f"{order}-image").get_attribute("src")
        assert src != before[order] and src.endswith(f"/{order}/40.png")
        expect(page.get_by_test_id(f"{order}-image")).to_have_js_property("complete", True)
        image = fetch_png(url + src)
        z = float(predict_logits(model, image[None])[0])
        expected = 1 / (1 + np.exp(-z)) if session.labels[4] == 1 else 1 / (1 + np.exp(z))
        assert float(page.get_by_test_id(f"{order}-probability").get_attribute("data-value")) == pytest.approx(expected, abs=1e-9)
        assert page.get_by_test_id(f"{order}-probability").inner_text() == f"{100 * expected:.1f} %"
    # the ground truth beside it: two interventions and two removals, each with its Δlogit
    assert page.get_by_test_id("interventions").locator("figure").count() == 2
    assert page.get_by_test_id("removals").locator("figure").count() == 2
    assert "Δz" in page.get_by_test_id("removals").inner_text()
    page.screenshot(path=str(shots / "explorer.png"), full_page=True)
    assert not external, external
    page.close()


def test_a_bad_query_parameter_is_a_400_not_a_traceback(explorer):
    url, browser, _, _ = explorer
    page = browser.new_page()
    response = page.goto(url + "/api/perturbed/gradient/1?p=abc")
    assert response.status == 400
    assert response.json()["error"] == "p: expected a whole percentage 0 … 99, got 'abc'"
    assert "Traceback" not in page.content()
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url + "/map/nonsense/1.png")
    assert err.value.code == 400
    page.close()
