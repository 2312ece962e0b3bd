"""Attribution methods: known answers on models whose gradients are known, every model kind,
the sanity check's two sides, saving, and the two CLI commands on painted data."""

import json

import numpy as np
import pytest
from extras import imported

torch = imported("models", "torch")
imported("models", "captum")

from two4two.explain.attribution import (  # noqa: E402
    DEFAULT_METHODS,
    METHODS,
    AttributionError,
    AttributionMaps,
    Attributions,
    attribution_method,
    cascade_layers,
    load_maps,
    randomised,
)
from two4two.explain.attribution_scores import cascading_randomisation  # noqa: E402
from two4two.models.classifier import build_classifier  # noqa: E402

pytestmark = pytest.mark.models
SIZE = 32


def images(n=4, size=SIZE, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def masks_for(imgs):
    m = np.zeros(imgs.shape[:3], np.uint8)
    m[:, 8:20, 6:26] = 4
    return m


class Linear(torch.nn.Module):
    """z = Σ w·x + b: every gradient method has a closed-form answer."""

    def __init__(self, size=SIZE, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(3, size, size, generator=g))
        self.b = torch.nn.Parameter(torch.tensor(0.3))

    def forward(self, x):
        return (x * self.w).sum(dim=(1, 2, 3)) + self.b


class TopLeft(torch.nn.Module):
    """Looks only at the top-left quarter of the red channel."""

    def forward(self, x):
        return x[:, 0, : x.shape[2] // 4, : x.shape[3] // 4].mean(dim=(1, 2)) * 10 - 5


def test_gradient_methods_give_the_closed_form_answers_of_a_linear_model():
    model, imgs = Linear(), images()
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    w = model.w.detach().numpy()
    grad = attribution_method("gradient", model).attribute(imgs, 1)
    assert np.allclose(grad, w.sum(axis=0)[None], atol=1e-5)
    # Class 0 is explained through −z: the same map with the opposite sign.
    assert np.allclose(attribution_method("gradient", model).attribute(imgs, 0), -grad, atol=1e-5)
    ixg = (x.numpy() * w[None]).sum(axis=1)
    for name in ("input_x_gradient", "integrated_gradients", "deeplift"):
        assert np.allclose(attribution_method(name, model).attribute(imgs, 1), ixg, atol=1e-4), name
    # SmoothGrad of a linear model is its gradient, whatever the noise.
    assert np.allclose(attribution_method("smoothgrad", model).attribute(imgs, 1), grad, atol=1e-5)
    # Integrated gradients' completeness: the map sums to z(x) − z(black).
    ig = attribution_method("integrated_gradients", model).attribute(imgs, [1, 0, 1, 0])
    z = model(x).detach().numpy() - model.b.item()
    assert np.allclose(ig.sum(axis=(1, 2)), np.where([1, 0, 1, 0], z, -z), rtol=1e-4, atol=1e-3)


class DarkIsUndefined(torch.nn.Module):
    """A logit undefined (NaN) on any image with a pixel darker than 0.05, as the INN's encoder is
    on images near black: a path from black, a black patch and DeepLift's black reference all reach it."""

    def __init__(self):
        super().__init__()
        self.squash = torch.nn.Sigmoid()  # a nonlinearity DeepLift's rescale rule sees

    def forward(self, x):
        return 4 * self.squash(torch.log(x.amin(dim=(1, 2, 3)) - 0.05))


def test_the_baseline_is_grey_for_the_inn_and_a_map_that_is_not_finite_is_refused():
    imgs = np.full((2, SIZE, SIZE, 3), 200, np.uint8)
    imgs[1, :8] = 90
    for name in ("integrated_gradients", "deeplift", "occlusion"):
        with pytest.raises(AttributionError, match=f"{name}: .*not finite.*--baseline grey"):
            attribution_method(name, DarkIsUndefined(), baseline="black").attribute(imgs, 1)
    # From grey, the whole path stays where the logit is defined; completeness holds from grey.
    ig = attribution_method("integrated_gradients", DarkIsUndefined(), baseline="grey", ig_steps=64).attribute(imgs, 1)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    z = DarkIsUndefined()(x) - DarkIsUndefined()(torch.full_like(x, 0.5))
    assert np.isfinite(ig).all() and np.allclose(ig.sum(axis=(1, 2)), z.numpy(), rtol=1e-2)
    # For a linear model, grey's integrated gradients are (x − ½)·w.
    model, w = Linear(), Linear().w.detach().numpy()
    ig = attribution_method("integrated_gradients", model, baseline="grey").attribute(imgs, 1)
    assert np.allclose(ig, ((x.numpy() - 0.5) * w[None]).sum(axis=1), atol=1e-4)
    # auto: black for a feed-forward classifier, grey for the INN.
    inn = build_classifier("inn", resolution=SIZE, levels=3, steps=1, hidden_channels=8, classifier_level=2)
    assert attribution_method("integrated_gradients", model).baseline_value == 0.0
    assert attribution_method("integrated_gradients", inn).baseline_value == 0.5
    with pytest.raises(AttributionError, match="baseline: 'white' is not one of auto, black, grey"):
        attribution_method("deeplift", model, baseline="white")


def test_occlusion_and_gradients_stay_where_the_model_looks():
    imgs = images()
    quarter = SIZE // 4
    for name in ("occlusion", "gradient"):
        a = attribution_method(name, TopLeft()).attribute(imgs, 1)
        reach = quarter + SIZE // 8  # an occluding window of side SIZE/8 can reach this far
        assert np.abs(a[:, reach:, :]).max() == 0 and np.abs(a[:, :, reach:]).max() == 0, name
        assert np.abs(a[:, :quarter, :quarter]).min() > 0, name


@pytest.mark.parametrize("arch,kwargs", [("small_cnn", {"width": 4}),
                                         pytest.param("resnet18", {}, marks=pytest.mark.slow),
                                         pytest.param("mobilenet_v2", {}, marks=pytest.mark.slow),
                                         pytest.param("vit", {"image_size": SIZE}, marks=pytest.mark.slow),
                                         pytest.param("hybrid_vit", {"image_size": SIZE, "width": 4}, marks=pytest.mark.slow),
                                         ("inn", {"resolution": SIZE, "levels": 3, "steps": 1, "hidden_channels": 8, "classifier_level": 2})])
def test_every_method_explains_every_model_kind_or_says_why_not(arch, kwargs):
    torch.manual_seed(0)
    model = build_classifier(arch, **kwargs).eval()
    imgs = images(3)
    if arch == "vit":  # torchvision zero-initialises the head: every gradient would be zero
        torch.nn.init.normal_(model.net.heads.head.weight, std=0.1)
    refused = {"small_cnn": {"attention_rollout"}, "resnet18": {"lrp", "deeplift", "attention_rollout"},
               "mobilenet_v2": {"lrp", "lrp_epsilon_plus", "attention_rollout"},
               "vit": {"lrp", "lrp_epsilon_plus", "guided_backprop", "deeplift", "grad_cam"},
               "hybrid_vit": {"lrp", "lrp_epsilon_plus", "guided_backprop", "deeplift"},
               "inn": {"lrp", "lrp_epsilon_plus", "attention_rollout"}}[arch]
    for name in METHODS:
        if name in refused:
            with pytest.raises(AttributionError, match=name):
                attribution_method(name, model)
            continue
        # few steps, samples and patches: whether the method runs on this model, not how well
        cheap = dict(batch_size=2, ig_steps=4, smoothgrad_samples=2, occlusion_window=SIZE // 2)
        a = attribution_method(name, model, **cheap).attribute(imgs, [0, 1, 1], masks_for(imgs))
        assert a.shape == (3, SIZE, SIZE) and a.dtype == np.float32 and np.isfinite(a).all(), name
        if name not in ("random",):
            assert np.abs(a).sum() > 0, name
        if name in ("grad_cam", "attention_rollout"):
            assert a.min() >= 0  # ReLU of the weighted activations (of the heads' weights), upsampled to the image
    # The model given is not changed by explaining it (captum's hooks act on a copy).
    assert all(not hasattr(m, "rule") for m in model.modules())


def test_explaining_the_other_class_negates_every_map_that_is_linear_in_the_logit():
    """Class 0 is explained through −z: a method linear in the explained output must give exactly the
    negated map (captum's LRP did not, before class 0 went through z's map times −1)."""
    from scipy import stats

    torch.manual_seed(0)
    model = build_classifier("small_cnn", width=4).eval()
    imgs = images(4)
    for name in ("gradient", "input_x_gradient", "integrated_gradients", "smoothgrad", "occlusion", "deeplift", "lrp",
                 "lrp_epsilon_plus"):
        zero = attribution_method(name, model).attribute(imgs, 0)
        one = attribution_method(name, model).attribute(imgs, 1)
        assert np.abs(one).sum() > 0 and np.allclose(zero, -one, atol=1e-5 * np.abs(one).max()), name
    # LRP-ε on this ReLU network reads as input × gradient does, for either class
    for target in (0, 1):
        lrp = attribution_method("lrp", model).attribute(imgs, target)
        ixg = attribution_method("input_x_gradient", model).attribute(imgs, target)
        assert min(stats.spearmanr(a.ravel(), b.ravel()).statistic for a, b in zip(lrp, ixg)) > 0.9


@pytest.mark.slow  # zennit's import and a ResNet-18: over 2 s
@pytest.mark.parametrize("arch,kwargs", [("small_cnn", {"width": 4}), ("resnet18", {})])
def test_zennit_lrp_conserves_the_explained_output_through_skip_connections(arch, kwargs):
    """With every bias zero, LRP's relevance at the input sums to the explained output (z, or −z for
    class 0): each residual sum splits its relevance between its two inputs (zennit's ResNet
    canonizer) instead of passing all of it to both, as a plain gradient through an addition would."""
    torch.manual_seed(0)
    model = build_classifier(arch, **kwargs).eval()
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.bias is not None:
            torch.nn.init.zeros_(m.bias)
    imgs, targets = images(3), np.array([0, 1, 1])
    a = attribution_method("lrp_epsilon_plus", model).attribute(imgs, targets)
    with torch.no_grad():
        z = model(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255).numpy()
    assert np.allclose(a.sum(axis=(1, 2)), np.where(targets == 1, z, -z), rtol=1e-2, atol=1e-7)
    assert np.abs(a).sum() > 0 and all(not hasattr(m, "rule") for m in model.modules())


def test_attention_rollout_reads_the_models_own_attention_per_patch_and_per_class():
    torch.manual_seed(0)
    model = build_classifier("vit", image_size=SIZE).eval()
    torch.nn.init.normal_(model.net.heads.head.weight, std=0.1)  # torchvision starts the head at zero
    imgs = images(3)
    method = attribution_method("attention_rollout", model)
    one, zero = method.attribute(imgs, 1), attribution_method("attention_rollout", model).attribute(imgs, 0)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():  # the attention written out computes what torch's does
        assert torch.allclose(method._wrapped(x)[:, 1], model(x), atol=1e-5)
    patches = one.reshape(3, SIZE // 8, 8, SIZE // 8, 8)
    assert np.allclose(patches, patches[:, :, :1, :, :1])  # one value per 8-px patch
    assert one.min() >= 0 and one.max() > 0
    assert not np.allclose(one, zero)  # the heads are weighted by the explained class's gradient
    with pytest.raises(AttributionError, match="attention_rollout: needs attention layers, and SmallCNN has none"):
        attribution_method("attention_rollout", build_classifier("small_cnn", width=4))


def test_the_hybrid_vits_rollout_reads_its_pooled_tokens_and_grad_cam_its_convolutional_tokens():
    torch.manual_seed(0)
    model = build_classifier("hybrid_vit", image_size=SIZE, width=4).eval()
    imgs = images(3)
    method = attribution_method("attention_rollout", model)
    one = method.attribute(imgs, 1)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        assert torch.allclose(method._wrapped(x)[:, 1], model(x), atol=1e-5)
    assert not method._class_token
    patches = one.reshape(3, SIZE // 8, 8, SIZE // 8, 8)
    assert np.allclose(patches, patches[:, :, :1, :, :1]) and one.min() >= 0
    # pooled: every token's row counts, so each patch keeps at least its own (identity) share of 1/64
    assert one.min() >= 1 / (SIZE // 8) ** 2 - 1e-6
    cam = attribution_method("grad_cam", model).attribute(imgs, 1)
    assert cam.shape == (3, SIZE, SIZE) and cam.min() >= 0 and cam.max() > 0


def test_architecture_specific_methods_are_not_in_the_default_list():
    assert {"lrp_epsilon_plus", "attention_rollout"} <= set(METHODS)
    assert not {"lrp_epsilon_plus", "attention_rollout"} & set(DEFAULT_METHODS)
    assert Attributions(Linear()).methods == list(DEFAULT_METHODS)


def test_bad_inputs_are_refused_with_the_field_and_the_allowed_values():
    model = Linear()
    with pytest.raises(AttributionError, match=r"float images must lie in \[0, 1\], got \[0, "):
        attribution_method("gradient", model).attribute(images().astype(np.float32), 1)
    with pytest.raises(AttributionError, match="uint8 or float in \\[0, 1\\], got int16"):
        attribution_method("gradient", model).attribute(images().astype(np.int16), 1)
    # float images in [0, 1] (Quantus's inputs) are the same images as their uint8 originals
    as_float = attribution_method("gradient", model).attribute(images().astype(np.float32) / 255, 1)
    assert np.allclose(as_float, attribution_method("gradient", model).attribute(images(), 1), atol=1e-6)
    with pytest.raises(AttributionError, match="target must be 0"):
        attribution_method("gradient", model).attribute(images(), 2)
    with pytest.raises(AttributionError, match="silhouette: needs the masks"):
        attribution_method("silhouette").attribute(images(), 1)
    with pytest.raises(AttributionError, match="allowed: gradient"):
        attribution_method("saliency", model)


@pytest.mark.slow
def test_a_randomised_model_changes_gradient_maps_but_not_the_edge_control():
    # A model trained briefly to read the red square, so its maps are not noise to begin with.
    rng = np.random.default_rng(0)
    n = 256
    labels = rng.integers(0, 2, n)
    imgs = rng.integers(0, 60, (n, SIZE, SIZE, 3), dtype=np.uint8)
    for img, label in zip(imgs, labels):
        top, left = rng.integers(0, SIZE - 12, 2)
        img[top:top + 12, left:left + 12, 0] = 220 if label else 110
    torch.manual_seed(0)
    model = build_classifier("small_cnn", width=8)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    x, y = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255, torch.from_numpy(labels).float()
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(model(x), y).backward()
        opt.step()
    model.eval()
    assert ((model(x) > 0).float() == y).float().mean() > 0.9
    assert [name for name, _ in cascade_layers(model)] == ["head", "stage4", "stage3", "stage2", "stage1", "stem"]
    sample, targets, masks = imgs[:16], labels[:16], masks_for(imgs[:16])
    steps = cascading_randomisation(model, "gradient", sample, targets, masks)
    assert len(steps) == 6 and steps[-1]["randomised_down_to"] == "stem"
    assert steps[-1]["spearman"] < 0.5 and steps[-1]["spearman_abs"] < 0.5
    for step in cascading_randomisation(model, "sobel", sample, targets, masks):
        assert step["spearman"] == 1.0 and step["ssim"] == 1.0
    # Randomising re-initialises exactly the blocks named, the rest stays the trained weights.
    r = randomised(model, 1)
    assert not torch.equal(r.head[-1].weight, model.head[-1].weight)
    assert torch.equal(r.stem[0].weight, model.stem[0].weight)


def test_maps_round_trip_through_their_compressed_file(tmp_path):
    imgs = images(5)
    maps = {"gradient": np.random.default_rng(3).standard_normal((5, SIZE, SIZE)).astype(np.float32),
            "silhouette": (masks_for(imgs) > 0).astype(np.float32)}
    saved = AttributionMaps(maps, [f"id{i}" for i in range(5)], np.array([0, 1, 1, 0, 1]), np.linspace(-2, 2, 5), {"gradient": 1.5},
                            imgs, masks_for(imgs), {"split": "test"})
    paths = saved.save(tmp_path, rows=3)
    back = load_maps(tmp_path)
    assert back.ids == saved.ids and np.array_equal(back.targets, saved.targets)
    assert np.allclose(back.maps["gradient"], maps["gradient"], rtol=1e-3, atol=1e-3)  # float16 on disk
    assert back.seconds == {"gradient": 1.5} and back.meta["split"] == "test"
    from PIL import Image

    width, height = Image.open(paths["png"]).size
    one_row = saved.save(tmp_path / "one", rows=1)["png"]
    assert Image.open(one_row).size[0] == width and Image.open(one_row).size[1] < height / 2  # a row per image, a column per map
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.slow
def test_explain_and_evaluate_attributions_from_the_command_line(tmp_path, capsys):
    import paint_worker

    from two4two.cli import main
    from two4two.dataset import ensure
    from two4two.models.training import parse_model_config, save_model_checkpoint

    config = {"name": "painted", "sampler": "study2022", "seed": 4, "resolution": [SIZE, SIZE], "output_dir": "unused",
              "splits": {"test": {"n": 12, "interventions": ["obj_color", "bg_color"]}}}
    (tmp_path / "c.yaml").write_text(json.dumps(config))
    root = ensure(tmp_path / "c.yaml", output_dir=tmp_path / "data", workers=1, worker_target=paint_worker.serve, progress=False)
    torch.manual_seed(0)
    model = build_classifier("small_cnn", width=4)
    model_config = parse_model_config({"kind": "classifier", "name": "t", "data": str(root), "output_dir": str(tmp_path / "m"),
                                       "model": {"arch": "small_cnn", "width": 4}})
    (tmp_path / "m").mkdir()
    save_model_checkpoint(tmp_path / "m" / "model.pt", model_config, model.state_dict(), 1, {"accuracy": 0.5}, [SIZE, SIZE])
    out = tmp_path / "maps"
    assert main(["explain", "attributions", "--model", str(tmp_path / "m"), "--data", str(root), "--methods", "gradient", "grad_cam",
                 "silhouette", "--images", "10", "-o", str(out)]) in (0, None)
    maps = load_maps(out)
    assert list(maps.maps) == ["gradient", "grad_cam", "silhouette"] and len(maps.ids) == 10
    scores_dir = tmp_path / "scores"
    assert main(["evaluate", "attributions", "--model", str(tmp_path / "m"), "--data", str(root), "--maps", str(out), "--no-removals",
                 "--sanity-images", "4", "--resamples", "50", "-o", str(scores_dir)]) in (0, None)
    table = (scores_dir / "attribution_scores.md").read_text()
    assert "silhouette (control)" in table and "attribute agreement" in table and "sanity" in table
    assert (scores_dir / "sanity_checks.png").stat().st_size > 0
    # Faithfulness curves, merged into that score table.
    faith = tmp_path / "faith"
    assert main(["evaluate", "faithfulness", "--model", str(tmp_path / "m"), "--data", str(root), "--maps", str(out),
                 "--percentages", "20", "60", "--reveal-levels", "5", "45", "--scores", str(scores_dir), "--resamples", "50",
                 "-o", str(faith)]) in (0, None)
    curves = (faith / "faithfulness_curves.csv").read_text().splitlines()
    assert len(curves) == 1 + 3 * (2 * 2 + 2)  # 3 methods × (MoRF and LeRF at 2 % + 2 reveal levels)
    merged = (faith / "attribution_scores.md").read_text()
    assert "ROAD: LeRF − MoRF (probability)" in merged and "top-p % shown: cross-entropy" in merged
    assert "attribute agreement" in merged  # the ground-truth scores are kept beside them
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:  # a percentage outside (0, 100) is refused while parsing
        main(["evaluate", "faithfulness", "--model", str(tmp_path / "m"), "--data", str(root), "--maps", str(out),
              "--percentages", "0", "-o", str(tmp_path / "bad")])
    assert exit_.value.code == 2 and not (tmp_path / "bad").exists()
    assert "argument --percentages: expected a percentage strictly between 0 and 100, got '0'" in capsys.readouterr().err
    # A method name that does not exist is refused while parsing, naming the allowed ones, exit 2.
    with pytest.raises(SystemExit) as exit_:
        main(["explain", "attributions", "--model", str(tmp_path / "m"), "--data", str(root), "--methods", "saliency",
              "-o", str(tmp_path / "x")])
    assert exit_.value.code == 2 and not (tmp_path / "x").exists()
    assert "argument --methods: invalid choice: 'saliency' (choose from 'gradient'" in capsys.readouterr().err
