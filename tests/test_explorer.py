"""The explorer's server side on a painted dataset (tests/paint_worker.py) with a small CNN: the
listing's filters, an image's ground truth, curves and slider images whose probability is the
model's on the very PNG served, and a 400 naming the field for every bad parameter."""

import io

import numpy as np
import pytest
from extras import imported

torch = imported("models", "torch")
imported("models", "captum")
imported("study", "flask")

from two4two.explorer.app import create_app  # noqa: E402
from two4two.explorer.session import ON_DEMAND, ExplorerSession  # noqa: E402
from two4two.models.classifier import build_classifier  # noqa: E402
from two4two.models.training import predict_logits  # noqa: E402

pytestmark = pytest.mark.models
SIZE = 32


@pytest.fixture(scope="module")
def painted(tmp_path_factory):
    from paint_worker import painted_test_split

    split = painted_test_split(tmp_path_factory.mktemp("explore"), 16, 8, ["obj_color", "bg_color"], ["right_legs"], SIZE)
    torch.manual_seed(0)
    return build_classifier("small_cnn", width=4).eval(), split


@pytest.fixture(scope="module")
def client(painted):
    model, split = painted
    session = ExplorerSession(model, split)
    return create_app(session).test_client(), session, model


def png_array(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)))


def test_the_listing_filters_by_class_correctness_and_logit(client):
    c, session, _ = client
    everything = c.get("/api/images").get_json()["images"]
    assert len(everything) == 16 and [e["index"] for e in everything] == list(range(16))
    peaky = c.get("/api/images?label=peaky").get_json()["images"]
    assert peaky and all(e["label"] == "peaky" for e in peaky) and len(peaky) < 16
    wrong = c.get("/api/images?correct=no").get_json()["images"]
    assert all(not e["correct"] for e in wrong)
    assert len(wrong) + len(c.get("/api/images?correct=yes").get_json()["images"]) == 16
    median = float(np.median(session.logits))
    high = c.get(f"/api/images?min_logit={median}").get_json()["images"]
    assert high and all(e["logit"] >= round(median, 4) - 1e-4 for e in high) and len(high) < 16


def test_an_images_details_hold_its_ground_truth_with_the_models_own_logits(client):
    c, session, model = client
    d = c.get("/api/image/3").get_json()
    assert d["index"] == 3 and d["id"] == session.params[3].id
    assert d["probability_stretchy"] == pytest.approx(1 / (1 + np.exp(-session.logits[3])))
    assert {m["name"] for m in d["methods"]} == set(ON_DEMAND)
    assert [t["attribute"] for t in d["interventions"]] == ["obj_color", "bg_color"]
    colour = d["interventions"][0]
    image = png_array(c.get(colour["url"]).data)
    assert colour["logit"] == pytest.approx(float(predict_logits(model, image[None])[0]), abs=1e-5)
    assert colour["delta_logit"] == pytest.approx(colour["logit"] - d["logit"])
    assert colour["before"] == pytest.approx(session.params[3].obj_color, abs=1e-4)
    assert [r["part"] for r in d["removals"]] == ["right_legs"]
    assert c.get(d["removals"][0]["url"]).status_code == 200


def test_slider_images_carry_the_models_probability_on_exactly_those_pixels(client):
    c, session, model = client
    r = c.get("/api/perturbed/gradient/5?p=40").get_json()
    label = session.labels[5]
    for order in ("morf", "lerf"):
        image = png_array(c.get(r[order]["url"]).data)
        z = float(predict_logits(model, image[None])[0])
        p_true = 1 / (1 + np.exp(-z)) if label == 1 else 1 / (1 + np.exp(z))
        assert r[order]["probability"] == pytest.approx(p_true, abs=1e-9)
        # 40 % of the pixels were imputed: the image changed, the other 60 % did not
        changed = (image != session.images[5]).any(axis=-1).mean()
        assert 0.05 < changed <= 0.4 + 1e-9
    assert (png_array(c.get(r["morf"]["url"]).data) != png_array(c.get(r["lerf"]["url"]).data)).any()
    # the same request gives the same bytes (cached, seeded), and p = 0 is the original image
    assert c.get(r["morf"]["url"]).data == c.get(r["morf"]["url"]).data
    zero = c.get("/api/perturbed/gradient/5?p=0").get_json()
    assert zero["morf"]["probability"] == pytest.approx(c.get("/api/image/5").get_json()["probability_true_class"], abs=1e-6)
    curves = c.get("/api/curves/gradient/5").get_json()
    assert curves["percentages"][0] == 0 and curves["percentages"][-1] == 90
    assert curves["morf"][curves["percentages"].index(40)] == pytest.approx(r["morf"]["probability"])


def test_maps_and_masks_are_images_and_the_page_is_locked_down(client):
    c, session, _ = client
    rgba = png_array(c.get("/map/silhouette/2.png").data)
    assert rgba.shape == (SIZE, SIZE, 4)
    assert np.array_equal(rgba[..., 3] > 0, session.masks[2] > 0)  # the silhouette map is the mask, transparent elsewhere
    assert png_array(c.get("/mask/2.png").data).shape == (SIZE, SIZE, 3)
    page = c.get("/")
    assert page.status_code == 200 and "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert b"http" not in page.data.replace(b"http://www.w3.org", b"")  # no external asset


@pytest.mark.parametrize("url,field", [
    ("/api/image/99", "image: expected an index 0 … 15, got 99"),
    ("/api/image/x1", "image: expected an index 0 … 15, got 'x1'"),
    ("/api/curves/saliency/1", "method: expected one of gradient"),
    ("/api/perturbed/gradient/1?p=100", "p: expected a whole percentage 0 … 99, got 100"),
    ("/api/perturbed/gradient/1", "p: expected a whole percentage 0 … 99, got 'None'"),
    ("/perturbed/gradient/1/most/10.png", "order: expected morf or lerf, got 'most'"),
    ("/api/images?label=cat", "label: expected any, peaky or stretchy, got 'cat'"),
    ("/api/images?min_logit=inf", "min_logit: expected a finite number"),
    ("/api/images?colour=red", "colour: not a filter; allowed: label, correct, min_logit, max_logit"),
    ("/intervention/spherical/1.png", "attribute: expected one of obj_color, bg_color, got 'spherical'"),
    ("/removal/spine/1.png", "part: expected one of right_legs, got 'spine'"),
])
def test_every_bad_parameter_is_a_400_naming_it(client, url, field):
    c, _, _ = client
    response = c.get(url)
    assert response.status_code == 400
    assert field in response.get_json()["error"]
    assert b"Traceback" not in response.data
