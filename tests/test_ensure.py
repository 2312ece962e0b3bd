"""dataset.ensure and Split without Blender (tests/paint_worker.py paints the samples):
later stages read finished data; ensure renders what is missing by the config's own rules."""

import json

import numpy as np
import pytest

from two4two.config import load_config, parse_config
from two4two.dataset import DatasetError, ensure, plan_config, read_manifest, read_split
from two4two.explain.baseline import Baseline
from two4two.importance import Importance
from two4two.sampling import SceneBatch
from two4two.split import Split

CONFIG = {
    "name": "painted",
    "sampler": "study2022",
    "seed": 3,
    "resolution": [16, 16],
    "output_dir": "unused",
    "splits": {"train": {"n": 30}, "test": {"n": 24, "interventions": ["bg_color"]}},
}


def paint_options():
    import paint_worker

    return {"workers": 1, "worker_target": paint_worker.serve, "progress": False}


@pytest.fixture
def painted(tmp_path):
    path = tmp_path / "painted.yaml"
    path.write_text(json.dumps(CONFIG))  # YAML is a superset of JSON
    return path, ensure(path, output_dir=tmp_path / "data", **paint_options())


class ColourReader:
    """A parameter-reading model: the logit is the colour, centred; counts its calls."""

    reads_parameters = True

    def __init__(self):
        self.calls = 0

    def __call__(self, params):
        self.calls += 1
        return np.array([4 * (p.obj_color - 0.5) for p in params])


def test_ensure_renders_every_split_of_a_config_once(painted):
    config_path, root = painted
    manifest = read_manifest(root)
    assert manifest["status"] == "complete"
    assert manifest["counts"] == {"train": 30, "test": 24, "test_intervened_bg_color": 24}
    before = (root / "train" / "parameters.jsonl").stat().st_mtime_ns
    assert ensure(config_path, output_dir=root, **paint_options()) == root
    assert (root / "train" / "parameters.jsonl").stat().st_mtime_ns == before


def test_interventions_added_later_are_those_the_config_would_have_drawn(painted, tmp_path):
    config_path, root = painted
    ensure(root, {"test": ["obj_color", "spherical"]}, **paint_options())
    listed = dict(CONFIG, splits={**CONFIG["splits"], "test": {"n": 24, "interventions": ["bg_color", "obj_color", "spherical"]}})
    job = plan_config(parse_config(listed), tmp_path / "other")
    for attribute in ("obj_color", "spherical"):
        added = read_split(root, f"test_intervened_{attribute}")
        assert [p.to_dict() for p in added] == [p.to_dict() for p in job.splits[f"test_intervened_{attribute}"]]
    manifest = read_manifest(root)
    assert manifest["splits"]["test_intervened_spherical"] == {"n": 24, "intervention_of": "test", "attribute": "spherical"}
    assert manifest["counts"]["test_intervened_obj_color"] == 24
    # the seed rule is DatasetConfig.sample_intervention's
    config = load_config(config_path)
    redrawn = config.sample_intervention("test", "obj_color", SceneBatch.from_params(read_split(root, "test")))
    assert [p.obj_color for p in redrawn.to_list()] == [p.obj_color for p in read_split(root, "test_intervened_obj_color")]


def test_ensure_refuses_a_directory_that_is_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match="not a rendered dataset"):
        ensure(tmp_path)


def test_a_split_reads_once_and_computes_each_models_logits_once(painted):
    _, root = painted
    split = Split(root, "test")
    model = ColourReader()
    first = split.logits(model)
    assert split.logits(model) is first and model.calls == 1
    assert split.images.shape == (24, 16, 16, 3) and split.images is split.images
    np.testing.assert_allclose(first, [4 * (p.obj_color - 0.5) for p in read_split(root, "test")])
    assert split.logits(ColourReader()) is not first  # another model: computed anew
    with pytest.raises(DatasetError, match="no intervention split for spherical of 'test'.*--create-interventions"):
        split.intervention("spherical")


def test_stages_read_finished_data_and_name_what_is_missing(painted):
    _, root = painted
    with pytest.raises(DatasetError, match="no intervention split for obj_color of 'test'; render them with two4two evaluate importance --create-interventions"):
        Importance(ColourReader(), ["obj_color"], n_resamples=20).evaluate(Split(root, "test"))
    assert not (root / "test_intervened_obj_color").exists()  # nothing was rendered behind the user's back
    result = Importance(ColourReader(), ["bg_color"], n_resamples=20).evaluate(Split(root, "test"))
    assert result.rows[0].flip_percent.value == 0 and result.rows[0].median_abs_delta_logit.value == 0


def test_the_baseline_explainer_orders_its_columns_by_logit_and_saves_png_and_json(painted, tmp_path):
    _, root = painted
    grid = Baseline(ColourReader(), rows=2).explain(Split(root, "test"), seed=1)
    assert grid.images.shape == (2, 5, 16, 16, 3)
    for c in range(5):  # sorted within a column; every image of a column below every image of the next
        assert np.all(np.diff(grid.logits[:, c]) >= 0)
        assert c == 4 or grid.logits[:, c].max() <= grid.logits[:, c + 1].min()
    paths = grid.save(tmp_path / "grid.png")
    assert set(paths) == {"png", "json"} and json.loads(paths["json"].read_text())["ids"] == grid.ids


def test_part_removal_splits_are_the_originals_without_the_part_rendered_once(painted):
    from two4two.layout import parameters_path

    _, root = painted
    ensure(root, removals={"test": ["right_legs", "spine_left"]}, **paint_options())
    manifest = read_manifest(root)
    originals = read_split(root, "test")
    for part, blocks in (("right_legs", ("arm_right_top", "arm_right_bottom")), ("spine_left", ("spine_left",))):
        name = f"test_removed_{part}"  # the layout's name for it
        assert manifest["splits"][name] == {"n": 24, "intervention_of": None, "removal_of": "test", "group": part}
        removed = Split(root, "test").removal(part).params
        assert [p.original_id for p in removed] == [p.id for p in originals]
        assert all(p.hidden_blocks == blocks for p in removed)
        # Everything but the hidden blocks and the provenance is the original's.
        assert all(r.replace(id=o.id, original_id=None, hidden_blocks=()) == o for r, o in zip(removed, originals))
    before = parameters_path(root, "test_removed_spine_left").stat().st_mtime_ns
    ensure(root, removals={"test": ["spine_left"]}, **paint_options())
    assert parameters_path(root, "test_removed_spine_left").stat().st_mtime_ns == before
    with pytest.raises(DatasetError, match="'tail' is not a block group or block; allowed: right_legs"):
        ensure(root, removals={"test": ["tail"]}, **paint_options())
    with pytest.raises(DatasetError, match="no part-removal split"):
        Split(root, "test").removal("left_legs")
    with pytest.raises(Exception, match="_removed_"):
        parse_config({**CONFIG, "splits": {"test_removed_spine": {"n": 2}}})


def test_in_domain_part_removal_hides_one_part_per_chosen_image_at_the_configured_rate(tmp_path):
    """FunnyBirds' in-domain removal as a split option: with probability `rate` one part, drawn
    uniformly from `parts`, is hidden; the intervention split keeps its original's removal."""
    from scipy import stats

    from two4two.animal import PARTS

    parts = ["right_legs", "left_legs", "spine"]
    raw = {**CONFIG, "splits": {"train": {"n": 600, "part_removal": {"rate": 0.4, "parts": parts}, "interventions": ["bg_color"]},
                                "test": {"n": 50}}}
    job = plan_config(parse_config(raw))
    train, intervened = job.splits["train"], job.splits["train_intervened_bg_color"]
    hidden = [p.hidden_blocks for p in train]
    assert stats.binomtest(sum(map(bool, hidden)), len(hidden), 0.4).pvalue > 0.01
    counts = [sum(h == PARTS[part] for h in hidden) for part in parts]
    assert sum(counts) == sum(map(bool, hidden)) and stats.chisquare(counts).pvalue > 0.01  # one whole group, uniformly
    assert [p.hidden_blocks for p in intervened] == hidden
    assert not any(p.hidden_blocks for p in job.splits["test"])  # only the split that asks for it
    assert [p.hidden_blocks for p in plan_config(parse_config(raw)).splits["train"]] == hidden  # same config, same removals
    # rendered, the parameters file keeps each image's removal (the painted pool renders what it reads)
    small = {**raw, "splits": {"train": {"n": 12, "part_removal": {"rate": 1.0, "parts": ["spine_left"]}}}}
    path = tmp_path / "removal.yaml"
    path.write_text(json.dumps(small))
    root = ensure(path, output_dir=tmp_path / "data", **paint_options())
    assert all(p.hidden_blocks == ("spine_left",) for p in read_split(root, "train"))
    with pytest.raises(Exception, match=r"splits.train.part_removal.parts\[0\]: expected a block or block group.*got 'tail'"):
        parse_config({**CONFIG, "splits": {"train": {"n": 2, "part_removal": {"rate": 0.5, "parts": ["tail"]}}}})
    with pytest.raises(Exception, match=r"part_removal.rate: expected a number in \[0.0, 1.0\], got 2"):
        parse_config({**CONFIG, "splits": {"train": {"n": 2, "part_removal": {"rate": 2}}}})
