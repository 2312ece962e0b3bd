import subprocess
import sys
from pathlib import Path

import pytest

from two4two.cli import main
from two4two.parameters import read_jsonl, write_jsonl

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_sample_writes_reproducible_jsonl(tmp_path):
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    assert main(["sample", str(CONFIGS / "quickstart.yaml"), "--n", "50", "-o", str(a)]) == 0
    assert main(["sample", str(CONFIGS / "quickstart.yaml"), "--n", "50", "-o", str(b)]) == 0
    assert main(["sample", str(CONFIGS / "quickstart.yaml"), "--n", "50", "--seed", "9", "-o", str(c)]) == 0
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    params = read_jsonl(a)
    assert len(params) == 50 and params[0].resolution == (64, 64)


def test_sample_a_named_split(tmp_path):
    out = tmp_path / "test.jsonl"
    assert main(["sample", str(CONFIGS / "quickstart.yaml"), "--split", "test", "-o", str(out)]) == 0
    assert len(read_jsonl(out)) == 40


@pytest.mark.slow  # three bias reports with their joint-distribution figures
def test_describe_a_config_a_params_file_and_a_dataset_dir(tmp_path, capsys):
    plot = tmp_path / "plot.png"
    assert main(["describe", str(CONFIGS / "study2022.yaml"), "--n", "5000", "-o", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "obj_color" in out and "MI | legs" in out and plot.is_file()

    params = tmp_path / "p.jsonl"
    main(["sample", str(CONFIGS / "quickstart.yaml"), "-o", str(params)])
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
        (["describe", "notes.txt"], "expected a config (.yaml)"),
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
    result = run_cli("sample", str(config), "-o", str(tmp_path / "p.jsonl"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "sampler_args.bg_color: bg_color: 2.0 is outside the allowed range [0, 1]" in result.stderr
    assert not (tmp_path / "p.jsonl").exists()  # nothing half-written
