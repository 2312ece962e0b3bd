"""Export to Parquet and WebDataset, read back by the real libraries (datasets, webdataset, pyarrow)
and compared byte for byte and value for value with the source dataset (written without Blender)."""

import glob
import json
import tarfile

import numpy as np
import pytest

from two4two.cli import main
from two4two.config import parse_config
from two4two.dataset import DatasetError, SplitWriter, plan_config, read_split, write_manifest
from two4two.dataset.export import EXPORT_MANIFEST, export_dataset
from two4two.errors import Two4TwoError
from two4two.dataset.jobs import removal_params
from two4two.layout import parameters_path, removal_split, split_names

pytestmark = pytest.mark.dev  # datasets, webdataset and pyarrow come with the dev extra


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A complete dataset with a train split, a test split with an intervention, and a removal split;
    random PNGs stand in for renders (export copies bytes, it never decodes to write)."""
    root = tmp_path_factory.mktemp("source")
    config = parse_config({"sampler": "study2022", "seed": 4, "resolution": [16, 16], "splits": {
        "train": {"n": 23}, "test": {"n": 7, "interventions": ["bg_color"]}}})
    splits = plan_config(config, root).splits
    splits[removal_split("test", "arm_left_top")] = removal_params(splits["test"], "arm_left_top")
    rng = np.random.default_rng(0)
    for name, params in splits.items():
        writer = SplitWriter(root / name, params)
        for i in range(len(params)):
            writer.write(i, rng.integers(0, 256, (16, 16, 3), np.uint8), rng.integers(0, 9, (16, 16), np.uint8))
        writer.close()
    write_manifest(root, {"format": 3, "name": "src", "status": "complete", "splits": {}, "counts": {}})
    return root


def source_rows(root, split):
    lines = [json.loads(line) for line in parameters_path(root, split).read_text().splitlines()]
    return [(line, (root / split / "images" / f"{line['id']}.png").read_bytes(),
             (root / split / "masks" / f"{line['id']}.png").read_bytes()) for line in lines]


def test_parquet_reads_back_in_hugging_face_datasets_with_every_byte_and_value(source, tmp_path):
    import datasets

    out = tmp_path / "pq"
    export_dataset(source, out, "parquet", shard_size=10, progress=False)
    splits = split_names(source)
    assert len(splits) == 4 and any("_removed_" in s for s in splits) and any("_intervened_" in s for s in splits)
    by_files = datasets.load_dataset("parquet", data_files={s: sorted(glob.glob(str(out / f"{s}-*.parquet"))) for s in splits},
                                     cache_dir=str(tmp_path / "hf_cache"))
    loaded = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf_cache2"))  # the folder: its card names the splits
    assert set(loaded) == set(splits) and all(len(loaded[s]) == len(by_files[s]) for s in splits)
    for split in splits:
        table = loaded[split]
        assert table.features["image"] == datasets.Image() and table.features["mask"] == datasets.Image()
        raw = table.cast_column("image", datasets.Image(decode=False)).cast_column("mask", datasets.Image(decode=False))
        rows = source_rows(source, split)
        assert len(raw) == len(rows)
        for exported, (line, image, mask) in zip(raw, rows):
            assert exported["image"]["bytes"] == image and exported["mask"]["bytes"] == mask
            assert exported["image_sha256"] == line["sha256"]["image"] and exported["mask_sha256"] == line["sha256"]["mask"]
            for key, value in line.items():
                if key != "sha256":
                    assert exported[key] == value, (split, key)
        params = read_split(source, split)
        assert list(table["label"]) == [p.label for p in params] and list(table["split"]) == [split] * len(params)
        decoded = np.asarray(table[0]["mask"])  # and decoded: the mask's labels, not colours
        assert decoded.shape == (16, 16) and decoded.max() <= 8
    removed = loaded[next(s for s in splits if "_removed_" in s)]
    assert set(removed["original_id"]) == {p.id for p in read_split(source, "test")}
    assert all(blocks == ["arm_left_top"] for blocks in removed["hidden_blocks"])


def test_webdataset_shards_read_back_with_the_webdataset_library(source, tmp_path):
    import webdataset as wds

    out = tmp_path / "wd"
    record = json.loads(export_dataset(source, out, "webdataset", splits=["train"], shard_size=10, progress=False).read_text())
    files = record["splits"]["train"]["files"]
    assert [f["samples"] for f in files] == [10, 10, 3] and set(record["splits"]) == {"train"}
    samples = list(wds.WebDataset([str(out / f["file"]) for f in files], shardshuffle=False))
    rows = source_rows(source, "train")
    assert len(samples) == len(rows)
    for sample, (line, image, mask) in zip(samples, rows):
        assert sample["__key__"] == line["id"] and sample["png"] == image and sample["mask.png"] == mask
        fields = json.loads(sample["json"])
        assert {k: v for k, v in line.items() if k != "sha256"}.items() <= fields.items()
        assert fields["image_sha256"] == line["sha256"]["image"]


def test_the_export_manifest_lists_each_file_with_its_checksum(source, tmp_path):
    import hashlib

    import pyarrow.parquet as pq

    record = json.loads(export_dataset(source, tmp_path / "pq", "parquet", splits=["test"], progress=False).read_text())
    (entry,) = record["splits"]["test"]["files"]
    path = tmp_path / "pq" / entry["file"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    assert pq.read_metadata(path).num_rows == entry["samples"] == 7
    assert record["source_manifest"]["name"] == "src"
    assert sorted(p.name for p in (tmp_path / "pq").iterdir()) == ["README.md", EXPORT_MANIFEST, "test-00000.parquet"]


def test_a_damaged_image_is_refused_and_leaves_no_shard_under_its_final_name(source, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(source, copy)
    line = json.loads(parameters_path(copy, "train").read_text().splitlines()[12])
    image = copy / "train" / "images" / f"{line['id']}.png"
    image.write_bytes(image.read_bytes()[:-1] + b"\x00")
    with pytest.raises(DatasetError, match=f"{line['id']}.png: damaged"):
        export_dataset(copy, tmp_path / "out", "webdataset", splits=["train"], shard_size=10, progress=False)
    left = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert left == ["train-00000.tar"]  # the first, whole shard; the second never got its name, no export.json
    with tarfile.open(tmp_path / "out" / "train-00000.tar") as tar:
        assert len(tar.getnames()) == 30


def test_what_export_refuses_is_named(source, tmp_path, capsys):
    with pytest.raises(DatasetError, match="no split 'val'; available: test, "):
        export_dataset(source, tmp_path / "a", "parquet", splits=["val"], progress=False)
    with pytest.raises(Two4TwoError, match="format: 'csv' is not an export format; allowed: parquet, webdataset"):
        export_dataset(source, tmp_path / "b", "csv", progress=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    assert main(["export", str(source), "-o", str(tmp_path / "full"), "--format", "parquet"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "-o", str(tmp_path / "c"), "--format", "parquet"]) == 2
    assert "not a two4two dataset" in capsys.readouterr().err


def test_export_from_the_command_line_reports_each_split(source, tmp_path, capsys):
    assert main(["export", str(source), "-o", str(tmp_path / "o"), "--format", "webdataset", "--split", "test", "train"]) == 0
    out = capsys.readouterr().out
    assert "test: 7 samples in 1 file(s)" in out and "train: 23 samples in 1 file(s)" in out
