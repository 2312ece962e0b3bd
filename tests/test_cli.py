import subprocess
import sys
from pathlib import Path

import pytest

from two4two.cli import main
from two4two.parameters import read_jsonl, write_jsonl

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_sample_writes_reproducible_jsonl(tmp_path):
    a, b, c = (tmp_path / name / "train.jsonl" for name in "abc")  # -o names a directory; the split names the file
    assert main(["sample", str(CONFIGS / "quickstart.yaml"), "--n", "50", "-o", str(a.parent)]) == 0
    assert main(["sample", str(CONFIGS / "quickstart.yaml"), "--n", "50", "-o", str(b.parent)]) == 0
    assert main(["sample", str(CONFIGS / "quickstart.yaml"), "--n", "50", "--seed", "9", "-o", str(c.parent)]) == 0
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    params = read_jsonl(a)
    assert len(params) == 50 and params[0].resolution == (64, 64)


def test_sample_a_named_split(tmp_path):
    assert main(["sample", str(CONFIGS / "quickstart.yaml"), "--split", "test", "-o", str(tmp_path)]) == 0
    assert len(read_jsonl(tmp_path / "test.jsonl")) == 40


def test_an_output_file_of_the_previous_release_is_still_written_with_a_line(tmp_path, capsys):
    assert main(["sample", str(CONFIGS / "quickstart.yaml"), "--n", "5", "-o", str(tmp_path / "old.jsonl")]) == 0
    assert len(read_jsonl(tmp_path / "old.jsonl")) == 5
    assert "-o now names a directory (train.jsonl is written inside it)" in capsys.readouterr().err


@pytest.mark.slow  # three bias reports with their joint-distribution figures
def test_describe_a_config_a_params_file_and_a_dataset_dir(tmp_path, capsys):
    assert main(["describe", str(CONFIGS / "study2022.yaml"), "--n", "5000", "-o", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    assert "obj_color" in out and "MI | legs" in out and (tmp_path / "plots" / "study2022_train_bias.png").is_file()

    main(["sample", str(CONFIGS / "quickstart.yaml"), "-o", str(tmp_path)])
    params = tmp_path / "p.jsonl"
    (tmp_path / "train.jsonl").rename(params)
    assert main(["describe", str(params)]) == 0
    assert (tmp_path / "p.bias.png").is_file()

    dataset = tmp_path / "ds"
    write_jsonl(dataset / "train" / "parameters.jsonl", read_jsonl(params)[:100])
    write_jsonl(dataset / "test" / "parameters.jsonl", read_jsonl(params)[100:])
    assert main(["describe", str(dataset)]) == 0
    assert "Bias report over 240 samples" in capsys.readouterr().out
    assert (dataset / "bias_report.png").is_file()


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "two4two.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


@pytest.mark.parametrize(
    "args,message",
    [
        (["sample", "missing.yaml", "-o", "x.jsonl"], "missing.yaml: no such config file"),
        (["describe", "missing.jsonl"], "missing.jsonl: no such parameters file"),
        (["describe", "notes.txt"], "expected a config (.yaml or a built-in's name)"),
    ],
)
@pytest.mark.slow  # each case starts a fresh Python for the CLI
def test_user_errors_are_one_line_without_traceback(tmp_path, args, message):
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert message in result.stderr


@pytest.mark.slow  # starts a fresh Python for the CLI
def test_bad_config_value_exits_with_the_key_path(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("sampler: study2022\nseed: 1\nsplits:\n  train: {n: 5}\nsampler_args:\n  bg_color: 2.0\n")
    result = run_cli("sample", str(config), "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "sampler_args.bg_color: bg_color: 2.0 is outside the allowed range [0, 1]" in result.stderr
    assert not (tmp_path / "out").exists()  # nothing half-written


# ---- one vocabulary: the command table, renamed spellings, values checked while parsing


def _parsed(argv):
    from two4two.cli import build_parser

    return build_parser().parse_args(argv)


def test_every_command_of_the_table_answers_help_and_the_groups_list_their_verbs(capsys):
    from two4two.cli import _commands

    for command in _commands():
        with pytest.raises(SystemExit) as exit_:
            main([*command.path, "--help"])
        assert exit_.value.code == 0, command.path
        assert command.help.split(" (")[0][:40] in " ".join(capsys.readouterr().out.split()), command.path
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    listed = capsys.readouterr().out
    assert all(verb in listed for verb in ("importance", "audit", "observer", "attributions", "faithfulness"))


def test_old_command_names_still_run_and_say_the_new_name(tmp_path, capsys):
    # A missing checkpoint: the command runs (and fails on the model), after the one deprecation line.
    assert main(["importance", "--model", str(tmp_path / "none"), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "two4two: `importance` is now `evaluate importance`; the old name goes in the next release"
    assert "no such checkpoint" in err[1]
    missing = str(tmp_path / "none")
    for old, rest, new in ((["explain", "audit"], ["--inn", missing, "--observer", missing, "--data", missing], "evaluate audit"),
                           (["explain", "observe"], ["--observer", missing, "--data", missing], "evaluate observer"),
                           (["study", "export"], [missing, "-o", str(tmp_path / "b")], "study bundle"),
                           (["study", "export-responses"], ["--db", missing, "--bundle", missing, "-o", str(tmp_path / "r.csv")], "study responses")):
        assert main([*old, *rest]) == 2  # nothing to read: refused, after the line naming the new command
        assert capsys.readouterr().err.splitlines()[0] == f"two4two: `{' '.join(old)}` is now `{new}`; the old name goes in the next release"
    # The old names are not listed: help shows one name per verb.
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "importance" not in capsys.readouterr().out.split("COMMAND")[-1].split("evaluate")[0]


@pytest.mark.parametrize("argv, dest, value, new", [
    (["evaluate", "importance", "--model", "m", "--data", "d", "--bootstrap", "7"], "resamples", 7, "--resamples"),
    (["evaluate", "importance", "--model", "m", "--data", "d", "--baseline-random"], "random_init", True, "--random-init"),
    (["explain", "attributions", "--model", "m", "--data", "d", "-o", "o", "--baseline", "grey"], "reference_input", "grey", "--reference-input"),
    (["study", "analyze", "r.csv", "--baseline-condition", "video"], "control_condition", "video", "--control-condition"),
    (["verify", "d", "--workers", "3"], "hash_threads", 3, "--hash-threads"),
    (["study", "serve", "b", "--threads", "2"], "request_threads", 2, "--request-threads"),
])
def test_old_option_spellings_set_the_new_option_and_say_so(argv, dest, value, new, capsys):
    assert getattr(_parsed(argv), dest) == value
    assert f"is now {new}; the old spelling goes in the next release" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["explore", "--model", "m", "--data", "d", "--port", "99999"], "argument --port: expected a port in 1–65535, got '99999'"),
    (["study", "serve", "b", "--port", "0"], "argument --port: expected a port in 1–65535, got '0'"),
    (["render", "c.yaml", "--workers", "0"], "argument --workers: expected an integer ≥ 1, got 0"),
    (["evaluate", "importance", "--model", "m", "--data", "d", "--resamples", "0"], "argument --resamples: expected an integer ≥ 1, got 0"),
    (["evaluate", "attributions", "--model", "m", "--data", "d", "--maps", "x", "-o", "o", "--sanity-images", "-1"],
     "argument --sanity-images: expected an integer ≥ 0 (0: skip the sanity checks), got -1"),
    (["evaluate", "audit", "--inn", "i", "--observer", "o", "--data", "d", "--coverage", "1.5"], "argument --coverage: expected a share in (0, 1], got '1.5'"),
    (["sample", "c.yaml", "-o", "x", "--n", "ten"], "argument --n: expected an integer ≥ 1, got 'ten'"),
    (["evaluate", "faithfulness", "--model", "m", "--data", "d", "--maps", "x", "-o", "o", "--percentages", "10", "100"],
     "argument --percentages: expected a percentage strictly between 0 and 100, got '100'"),
    (["study", "analyze", "r.csv", "--expect", "concepts=lower"],
     "argument --expect: expected CONDITION=greater|less, e.g. counterfactual=greater, got 'concepts=lower'"),
])
def test_bad_option_values_are_refused_while_parsing_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        _parsed(argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(message)
