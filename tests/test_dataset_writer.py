"""The on-disk writer without Blender: ordering, crash recovery and refusing foreign data."""

import json

import numpy as np
import pytest

from two4two.config import parse_config
from two4two.dataset import (
    FORMAT_VERSION,
    DatasetError,
    SplitWriter,
    plan_config,
    prepare_output,
    read_split,
    write_manifest,
    fingerprint,
)
from two4two.sampling import Sampler


def fake_render(p):
    value = int(p.obj_color * 255)
    return np.full((8, 8, 3), value, np.uint8), np.full((8, 8), value % 9, np.uint8)


@pytest.fixture
def planned():
    return Sampler().sample(10, 0).to_list()


def test_lines_are_appended_in_planned_order_whatever_the_finishing_order(tmp_path, planned):
    writer = SplitWriter(tmp_path / "s", planned)
    for i in [3, 1, 0, 2, 9, 4, 5, 8, 6, 7]:
        writer.write(i, *fake_render(planned[i]))
        # The JSONL only ever holds the done prefix.
        assert [p.id for p in read_split(tmp_path, "s")] == [p.id for p in planned[: writer.next_index]]
    writer.close()
    assert writer.complete and read_split(tmp_path, "s") == planned


def test_recovery_cuts_a_torn_line_and_lines_whose_files_are_missing(tmp_path, planned):
    writer = SplitWriter(tmp_path / "s", planned)
    for i in range(6):
        writer.write(i, *fake_render(planned[i]))
    writer.close()
    jsonl = tmp_path / "s" / "parameters.jsonl"
    # Power loss: the last line is half written, and sample 4's mask never reached the disk.
    with open(jsonl, "a") as fh:
        fh.write(planned[6].to_json()[:30])
    (tmp_path / "s" / "masks" / f"{planned[4].id}.png").unlink()
    # kill -9 inside an atomic write: sample 6's mask never got past its temporary name.
    killed = tmp_path / "s" / "masks" / f".{planned[6].id}.png.x7q2.tmp"
    killed.write_bytes(b"")
    mine = tmp_path / "s" / "masks" / "notes.tmp"  # not a name atomic_write makes: left alone
    mine.write_text("keep")
    resumed = SplitWriter(tmp_path / "s", planned)
    assert resumed.next_index == 4 and resumed.remaining == [4, 5, 6, 7, 8, 9]
    assert jsonl.read_text().count("\n") == 4 and jsonl.read_text().endswith("\n")
    assert not killed.exists() and mine.read_text() == "keep"
    for i in resumed.remaining:
        resumed.write(i, *fake_render(planned[i]))
    resumed.close()
    assert read_split(tmp_path, "s") == planned


def test_a_truncated_png_is_not_counted_as_done(tmp_path, planned):
    writer = SplitWriter(tmp_path / "s", planned)
    for i in range(3):
        writer.write(i, *fake_render(planned[i]))
    writer.close()
    image = tmp_path / "s" / "images" / f"{planned[1].id}.png"
    image.write_bytes(image.read_bytes()[:-5])
    assert SplitWriter(tmp_path / "s", planned).next_index == 1


def test_a_jsonl_from_another_plan_is_refused(tmp_path, planned):
    writer = SplitWriter(tmp_path / "s", planned)
    writer.write(0, *fake_render(planned[0]))
    writer.close()
    other = Sampler().sample(10, 1).to_list()
    with pytest.raises(DatasetError, match="not the dataset the config describes"):
        SplitWriter(tmp_path / "s", other)


def test_prepare_output_refuses_foreign_or_different_data(tmp_path):
    identity = {"config": {"a": 1}}
    assert prepare_output(tmp_path / "new", identity, resume=False, overwrite=False) is None
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not a two4two dataset"):
        prepare_output(tmp_path / "junk", identity, resume=False, overwrite=False)

    root = tmp_path / "ds"
    (root / "train").mkdir(parents=True)
    write_manifest(root, {"format": FORMAT_VERSION, "name": "x", "fingerprint": fingerprint(identity),
                          "status": "incomplete", "splits": {"train": {}}})
    with pytest.raises(DatasetError, match="pass --resume"):
        prepare_output(root, identity, resume=False, overwrite=False)
    assert prepare_output(root, identity, resume=True, overwrite=False)["name"] == "x"
    with pytest.raises(DatasetError, match="holds a different dataset"):
        prepare_output(root, {"config": {"a": 2}}, resume=True, overwrite=False)
    assert prepare_output(root, {"config": {"a": 2}}, resume=False, overwrite=True) is None
    assert not (root / "train").exists() and not (root / "manifest.json").exists()


@pytest.mark.parametrize("old_format, why", [
    (1, "rendered before two4two drew the original Two4Two animal"),
    (2, "rendered with a 1 px box filter and a denoiser that painted dark fringes"),
])
def test_a_dataset_of_an_older_format_is_never_resumed_or_mixed(tmp_path, old_format, why):
    identity = {"config": {"a": 1}}
    root = tmp_path / "old"
    (root / "train").mkdir(parents=True)
    write_manifest(root, {"format": old_format, "name": "x", "fingerprint": fingerprint(identity), "status": "incomplete",
                          "splits": {"train": {}}})
    for resume in (True, False):
        with pytest.raises(DatasetError, match=rf"format {old_format}, {why}.* writes format {FORMAT_VERSION} .* --overwrite"):
            prepare_output(root, identity, resume=resume, overwrite=False)
    assert (root / "train").exists()  # nothing was touched
    assert prepare_output(root, identity, resume=False, overwrite=True) is None


def test_plan_has_intervention_splits_pointing_back():
    config = parse_config(
        {"sampler": "study2022", "seed": 3, "splits": {"train": {"n": 4}, "test": {"n": 5, "interventions": ["obj_color", "bg_color"]}}}
    )
    job = plan_config(config)
    assert list(job.splits) == ["train", "test", "test_intervened_obj_color", "test_intervened_bg_color"]
    originals = {p.id: p for p in job.splits["test"]}
    for name, attr in (("test_intervened_obj_color", "obj_color"), ("test_intervened_bg_color", "bg_color")):
        assert job.split_info[name] == {"n": 5, "intervention_of": "test", "attribute": attr}
        for p in job.splits[name]:
            o = originals[p.original_id]
            assert p.changed_attributes == (attr,)
            assert {k for k, v in p.to_dict().items() if v != o.to_dict()[k]} == {"id", attr, "original_id", "changed_attributes"}
    # Planning is deterministic: same config, same ids and values.
    again = plan_config(config)
    assert json.dumps([p.to_dict() for p in again.splits["test_intervened_obj_color"]]) == json.dumps(
        [p.to_dict() for p in job.splits["test_intervened_obj_color"]]
    )
