"""Datasets that cannot be silently corrupted: one writer at a time, checksums, verify and repair,
and I/O errors that name their path. Most tests paint their samples (tests/paint_worker.py);
the Blender ones show the same on real renders."""

import errno
import json
import os
import subprocess
import sys

import pytest
from extras import imported

from two4two.cli import main
from two4two.config import load_config
from two4two.dataset import DatasetError, SplitWriter, Two4TwoDataset, ensure, load_split_arrays, plan_config, run_render_job
from two4two.dataset.verify import verify
from two4two.locks import LockedError, exclusive

CONFIG = {
    "name": "painted",
    "sampler": "study2022",
    "seed": 5,
    "resolution": [16, 16],
    "output_dir": "unused",
    "splits": {"train": {"n": 30}, "test": {"n": 12, "interventions": ["bg_color"]}},
}


def paint_options():
    import paint_worker

    return {"workers": 1, "worker_target": paint_worker.serve, "progress": False}


def tree(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in ("manifest.json", ".lock")}


@pytest.fixture
def painted(tmp_path):
    config = tmp_path / "painted.yaml"
    config.write_text(json.dumps(CONFIG))
    root = ensure(config, output_dir=tmp_path / "data", **paint_options())
    return config, root


# ---------------------------------------------------------------- one writer


HOLD_LOCK = """
import sys, time
from two4two.locks import exclusive
with exclusive(sys.argv[1], "dataset"):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_writer_is_refused_naming_the_holder_and_a_killed_holder_leaves_nothing_stale(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / "ds")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError) as caught:
            with exclusive(tmp_path / "ds", "dataset"):
                pass
        message = str(caught.value)
        assert f"pid {holder.pid} on {os.uname().nodename}" in message and str(tmp_path / "ds") in message
        assert "\n" not in message
    finally:
        holder.kill()  # SIGKILL: no cleanup code runs
        holder.wait()
    with exclusive(tmp_path / "ds", "dataset") as lock:  # the kernel released the dead holder's lock
        assert json.loads(lock.read_text())["pid"] == os.getpid()


def test_a_render_into_a_dataset_being_written_is_refused_and_changes_nothing(painted):
    config, root = painted
    before = tree(root)
    job = plan_config(load_config(config), root)
    with exclusive(root, "dataset"):  # another writer holds it (flock: a second open in one process conflicts too)
        with pytest.raises(LockedError, match="is being written by another process"):
            run_render_job(job, resume=True, **paint_options())
        with pytest.raises(LockedError):
            ensure(root, interventions={"test": ["obj_color"]}, **paint_options())
    assert tree(root) == before
    # Readers never need the lock, and the writer goes on once it is free.
    ensure(root, interventions={"test": ["obj_color"]}, **paint_options())
    assert len(load_split_arrays(root, "test_intervened_obj_color", progress=False)[1]) == 12


# ---------------------------------------------------------------- checksums, verify, repair


def test_every_line_records_the_checksums_of_its_files(painted):
    import hashlib

    _, root = painted
    lines = [json.loads(line) for line in (root / "train" / "parameters.jsonl").read_text().splitlines()]
    assert len(lines) == 30
    for line in lines:
        for kind, folder in (("image", "images"), ("mask", "masks")):
            data = (root / "train" / folder / f"{line['id']}.png").read_bytes()
            assert line["sha256"][kind] == hashlib.sha256(data).hexdigest()
    report = verify(root, progress=False)
    assert report.ok and report.files == 2 * (30 + 12 + 12) and report.without_checksums == 0


def test_verify_names_every_damaged_and_unexpected_file_and_repair_restores_them_byte_for_byte(painted, capsys):
    config, root = painted
    original = tree(root)
    ids = [json.loads(line)["id"] for line in (root / "train" / "parameters.jsonl").read_text().splitlines()]
    truncated = root / "train" / "images" / f"{ids[3]}.png"
    truncated.write_bytes(truncated.read_bytes()[:40])
    test_ids = [json.loads(line)["id"] for line in (root / "test" / "parameters.jsonl").read_text().splitlines()]
    flipped = root / "test" / "masks" / f"{test_ids[2]}.png"
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit: still a PNG of the right size, but not the one rendered
    flipped.write_bytes(bytes(data))
    missing = root / "train" / "masks" / f"{ids[7]}.png"
    missing.unlink()
    stray = root / "train" / "images" / "notes.txt"
    stray.write_text("mine")
    leftover = root / "train" / "images" / f".{ids[9]}.png.abc.tmp"
    leftover.write_bytes(b"half")

    report = verify(root, progress=False)
    assert set(report.corrupt) == {truncated, flipped}
    assert report.missing == [missing]
    assert set(report.unexpected) == {stray, leftover}
    assert report.damaged == {"train": {ids[3], ids[7]}, "test": {test_ids[2]}}

    assert main(["verify", str(root)]) == 1
    out = capsys.readouterr()
    for path in (truncated, flipped, missing, stray):
        assert str(path) in out.out
    assert "--resume --repair" in out.err

    # Reading a damaged file names it and the repair, whichever reader it is.
    dataset = Two4TwoDataset(root, "train")
    with pytest.raises(DatasetError, match=rf"{truncated}: .*--repair"):
        dataset[3]
    with pytest.raises(DatasetError, match=rf"{flipped}: damaged .*SHA-256"):
        Two4TwoDataset(root, "test")[2]
    with pytest.raises(DatasetError, match=str(truncated)):
        load_split_arrays(root, "train", progress=False)

    job = plan_config(load_config(config), root)
    run_render_job(job, resume=True, repair=True, **paint_options())
    stray.unlink()  # repair leaves files it did not write alone; only its own temporaries go
    assert not leftover.exists()
    assert tree(root) == original
    assert verify(root, progress=False).ok
    assert main(["verify", str(root)]) == 0


def test_a_dataset_written_before_checksums_still_reads_and_verifies(painted):
    _, root = painted
    jsonl = root / "train" / "parameters.jsonl"
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    jsonl.write_text("".join(json.dumps({k: v for k, v in line.items() if k != "sha256"}) + "\n" for line in lines))
    report = verify(root, progress=False)
    assert report.ok and report.without_checksums == 30 and "no checksums" in report.summary()
    assert len(Two4TwoDataset(root, "train")) == 30 and Two4TwoDataset(root, "train")[0]["image"].shape == (3, 16, 16)
    cut = root / "train" / "images" / f"{lines[5]['id']}.png"
    cut.write_bytes(cut.read_bytes()[:-20])  # without a checksum, a truncated PNG is still found: it has no end
    assert verify(root, progress=False).corrupt == [cut]


@pytest.mark.slow
def test_a_re_render_that_differs_from_the_original_is_refused_not_written(painted):
    config, root = painted
    victim = sorted((root / "train" / "images").iterdir())[0]
    victim.unlink()
    job = plan_config(load_config(config), root)
    with pytest.raises(DatasetError, match=rf"{victim}: re-rendered, it differs from the original"):
        run_render_job(job, resume=True, repair=True, **{**paint_options(), "worker_target": _halving_worker})
    assert not victim.exists()


def _halving_worker(conn, settings):
    """The paint worker with every pixel value halved: a renderer whose output changed."""
    import paint_worker

    original = paint_worker.paint
    paint_worker.paint = lambda p: tuple(a // 2 for a in original(p))
    paint_worker.serve(conn, settings)


def test_repair_needs_resume(painted):
    config, root = painted
    with pytest.raises(DatasetError, match="--repair: only with --resume"):
        run_render_job(plan_config(load_config(config), root), repair=True, **paint_options())


# ---------------------------------------------------------------- I/O errors name their path


def test_a_full_disk_names_the_file_it_was_writing(tmp_path):
    """/dev/full fails every write with ENOSPC, as a full disk does: the split's lines go there."""
    import paint_worker

    planned = load_config_from(tmp_path).sample_split("train").to_list()
    writer = SplitWriter(tmp_path / "train", planned)
    writer._fh.close()
    writer._fh = open("/dev/full", "a", encoding="utf-8")
    with pytest.raises(OSError) as caught:
        writer.write(0, *paint_worker.paint(planned[0].to_dict()))
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "train" / "parameters.jsonl")
    with pytest.raises(OSError) as caught:
        writer.close()
    assert caught.value.filename == str(tmp_path / "train" / "parameters.jsonl")


def load_config_from(tmp_path):
    config = tmp_path / "painted.yaml"
    config.write_text(json.dumps(CONFIG))
    return load_config(config)


def test_an_unwritable_output_directory_is_one_line_naming_the_path(tmp_path, capsys):
    config = tmp_path / "painted.yaml"
    config.write_text(json.dumps(CONFIG))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert main(["render", str(config), "-o", str(blocker / "data")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("two4two: error: Not a directory") and str(blocker / "data") in err and "\n" not in err


# ---------------------------------------------------------------- the same on real renders


@pytest.mark.slow
@pytest.mark.render
def test_two_writers_on_one_dataset_the_second_is_refused_and_the_first_completes(tmp_path, tiny_render_config, capsys, wait_until):
    """The case found by hand: `render` and, seconds later, `render --resume` on the same directory."""
    n = 80
    config = tiny_render_config(tmp_path, n=n)
    out = tmp_path / "ds"
    cmd = [sys.executable, "-m", "two4two.cli", "render", str(config), "-o", str(out), "--workers", "1"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    jsonl = out / "train" / "parameters.jsonl"
    assert wait_until(lambda: jsonl.exists() and jsonl.read_text().count("\n") >= 1, timeout=180, interval=0.05)
    # The second writer, in this process (no start-up time, so it surely comes while the first renders).
    code = main(["render", str(config), "-o", str(out), "--workers", "1", "--resume"])
    err = capsys.readouterr().err
    assert first.poll() is None, "the first writer should still be rendering"
    assert code == 2
    assert f"pid {first.pid}" in err and str(out) in err and err.count("\n") == 1
    assert first.wait(timeout=300) == 0, first.stderr.read()
    ids = [json.loads(line)["id"] for line in jsonl.read_text().splitlines()]
    assert len(ids) == n and len(set(ids)) == n
    test_ids = [json.loads(line)["id"] for line in (out / "test" / "parameters.jsonl").read_text().splitlines()]
    assert len(test_ids) == len(set(test_ids)) == 4
    assert verify(out, progress=False).ok


@pytest.mark.slow
@pytest.mark.render
def test_a_truncated_render_is_found_by_verify_and_repaired_byte_identically(tmp_path, tiny_render_config, dataset_files, capsys):
    config = tiny_render_config(tmp_path, n=8)
    out = tmp_path / "ds"
    assert main(["render", str(config), "-o", str(out), "--workers", "1"]) == 0
    original = dataset_files(out)
    damaged = sorted((out / "train" / "images").iterdir())[4]
    damaged.write_bytes(damaged.read_bytes()[: len(damaged.read_bytes()) // 2])
    (out / "test" / "masks" / sorted(os.listdir(out / "test" / "masks"))[1]).unlink()
    # A plain resume renders nothing, and its overview (all 8 training images) trips over the damage.
    capsys.readouterr()
    assert main(["render", str(config), "-o", str(out), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"two4two: error: {damaged}: damaged image") and err.endswith("--resume --repair`")
    assert main(["verify", str(out)]) == 1
    assert main(["render", str(config), "-o", str(out), "--resume", "--repair", "--workers", "1"]) == 0
    assert dataset_files(out) == original
    assert main(["verify", str(out)]) == 0


# ---------------------------------------------------------------- the study's database


@pytest.fixture
def study_bundle(tmp_path):
    imported("study", "flask")
    from study_fixtures import make_bundle

    return make_bundle(tmp_path / "bundle")


def test_a_second_study_server_on_one_database_is_refused_before_it_prints_an_address(study_bundle, tmp_path, capsys):
    db = tmp_path / "responses.sqlite"
    with exclusive(db, "study database", lock_path=f"{db}.lock"):  # the first server
        assert main(["study", "serve", str(study_bundle), "--db", str(db), "--port", "9"]) == 2
    out = capsys.readouterr()
    assert "http://" not in out.out
    assert f"study database {db}: is being written by another process (pid {os.getpid()}" in out.err


def test_a_full_database_names_its_file_and_keeps_nothing_of_the_transaction(study_bundle, tmp_path):
    """SQLite's own "database or disk is full" (SQLITE_FULL), reached through max_page_count."""
    from two4two.errors import StorageError
    from two4two.study.bundle import load_bundle
    from two4two.study.storage import Storage

    db = tmp_path / "responses.sqlite"
    storage = Storage(db, load_bundle(study_bundle))
    conn = storage._connect()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages}")
    with pytest.raises(StorageError, match=rf"{db}: cannot write \(database or disk is full\)"):
        with storage.write() as c:
            c.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("small", "fits"))
            c.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("large", "x" * 200_000))
    with storage.read() as c:
        keys = {row[0] for row in c.execute("SELECT key FROM meta")}
    assert "small" not in keys and "large" not in keys and "schema" in keys
    storage.close()
