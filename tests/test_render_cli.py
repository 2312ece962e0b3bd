"""`two4two render` end to end: layout, manifest, resume after kill -9, refusing foreign data."""

import json
import subprocess
import sys

import numpy as np
import pytest

from two4two.cli import main
from two4two.dataset import MASK_LABELS, Two4TwoDataset, read_split
from two4two.parameters import write_jsonl
from two4two.sampling import Sampler

# The config (tiny_render_config) and the file comparison (dataset_files) are conftest fixtures,
# shared with test_ray_backend.


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, tiny_render_config):
    tmp = tmp_path_factory.mktemp("render")
    config = tiny_render_config(tmp, n=8)
    out = tmp / "ds"
    assert main(["render", str(config), "-o", str(out), "--workers", "1"]) == 0
    return config, out


@pytest.mark.slow
@pytest.mark.render
def test_layout_manifest_and_intervention_splits(rendered):
    _, out = rendered
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["counts"] == {"train": 8, "test": 4, "test_intervened_obj_color": 4, "test_intervened_bg_color": 4}
    assert manifest["seed"] == 5 and manifest["render_settings"]["samples"] == 2
    assert {"python", "numpy", "bpy", "two4two"} <= set(manifest["versions"])
    originals = {p.id for p in read_split(out, "test")}
    for split in ("train", "test", "test_intervened_obj_color"):
        params = read_split(out, split)
        for p in params:
            assert (out / split / "images" / f"{p.id}.png").is_file()
            assert (out / split / "masks" / f"{p.id}.png").is_file()
    assert {p.original_id for p in read_split(out, "test_intervened_obj_color")} == originals
    assert (out / "overview_train.png").is_file()


@pytest.mark.slow
@pytest.mark.render
def test_rendering_again_is_a_no_op_and_a_different_config_is_refused(rendered, tmp_path, capsys, tiny_render_config, dataset_files):
    config, out = rendered
    before = dataset_files(out)
    assert main(["render", str(config), "-o", str(out)]) == 0
    assert "already complete" in capsys.readouterr().out
    assert dataset_files(out) == before
    other = tiny_render_config(tmp_path, n=9, name="other.yaml")
    assert main(["render", str(other), "-o", str(out)]) == 2
    assert "holds a different dataset" in capsys.readouterr().err
    assert dataset_files(out) == before


@pytest.mark.slow
@pytest.mark.render
def test_resume_after_killing_the_whole_cli_gives_identical_files(tmp_path, tiny_render_config, dataset_files, kill_render_mid_run):
    # Enough samples that the kill lands mid-run even on an idle machine.
    config = tiny_render_config(tmp_path, n=80)
    reference = tmp_path / "reference"
    assert main(["render", str(config), "-o", str(reference), "--workers", "1"]) == 0
    out = tmp_path / "ds"
    cmd = [sys.executable, "-m", "two4two.cli", "render", str(config), "-o", str(out), "--workers", "1"]
    jsonl = out / "train" / "parameters.jsonl"
    kill_render_mid_run(cmd, jsonl, at_least=3)  # the CLI and its Blender workers, mid-run
    done = jsonl.read_text().count("\n")
    assert 3 <= done < 80, "the kill should land mid-run"
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "--resume" in result.stderr
    result = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert dataset_files(out) == dataset_files(reference)
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


@pytest.mark.slow
@pytest.mark.render
def test_render_params_renders_exactly_the_given_parameters(tmp_path):
    params = Sampler(resolution=(32, 32)).sample(3, 11).to_list()
    write_jsonl(tmp_path / "mine.jsonl", params)
    out = tmp_path / "out"
    assert main(["render-params", str(tmp_path / "mine.jsonl"), "-o", str(out), "--samples", "2"]) == 0
    assert read_split(out, "params") == params


@pytest.mark.slow
@pytest.mark.render
@pytest.mark.models
def test_torch_dataset_reads_images_labels_masks_and_targets(rendered):
    import torch
    _, out = rendered
    ds = Two4TwoDataset(out, "train", attributes=["obj_color", "arm_position"])
    params = read_split(out, "train")
    assert len(ds) == 8
    labels = []
    for i in range(len(ds)):
        item = ds[i]
        p = params[i]
        assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
        assert 0 <= item["image"].min() and item["image"].max() <= 1
        assert item["mask"].shape == (32, 32) and int(item["mask"].max()) < len(MASK_LABELS)
        assert item["targets"].tolist() == pytest.approx([p.obj_color, p.arm_position])
        assert item["label"] == p.true_label ^ p.labeling_error and item["true_label"] == p.true_label
        labels.append(item["label"] != item["true_label"])
    assert any(labels), "label noise of 0.5 should flip some of 8 labels"
    clean = Two4TwoDataset(out, "train", label_noise=False, with_mask=False)
    assert all(clean[i]["label"] == clean[i]["true_label"] for i in range(len(clean)))
    assert "mask" not in clean[0]
    np.testing.assert_allclose(ds.targets()[:, 0], [p.obj_color for p in params], rtol=1e-6)


def test_bad_render_settings_are_rejected_before_rendering(tmp_path, capsys):
    params = Sampler(resolution=(32, 32)).sample(2, 0).to_list()
    write_jsonl(tmp_path / "p.jsonl", params)
    with pytest.raises(SystemExit) as exit_:  # refused while the command line is parsed
        main(["render-params", str(tmp_path / "p.jsonl"), "-o", str(tmp_path / "out"), "--samples", "0"])
    assert exit_.value.code == 2
    assert "argument --samples: samples: expected an integer in [1, 65536], got 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
