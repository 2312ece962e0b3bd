"""Built-in configs by name: what `two4two render quickstart` reads from an installed wheel."""

from pathlib import Path

import pytest

from two4two.cli import main
from two4two.config import BUILTIN_CONFIGS, builtin_configs, config_file, load_config, read_yaml
from two4two.errors import ConfigError

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_the_checkouts_configs_folder_is_the_packages():
    """configs/ in a checkout is the package's own folder, so a path and a name read the same file."""
    assert REPO_CONFIGS.resolve() == BUILTIN_CONFIGS.resolve()
    assert set(builtin_configs()) == {p.stem for p in REPO_CONFIGS.glob("*.yaml")}


def test_a_name_a_name_with_its_suffix_and_a_path_load_the_same_config():
    refs = ("quickstart", "quickstart.yaml", REPO_CONFIGS / "quickstart.yaml")
    assert len({config_file(ref).resolve() for ref in refs}) == 1
    drawn = [list(load_config(ref).sample_split("train", n=5)) for ref in refs]
    assert drawn[0] == drawn[1] == drawn[2] and len(drawn[0]) == 5


def test_a_file_wins_over_the_builtin_of_the_same_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("quickstart").write_text("name: mine\nsampler: unbiased\nseed: 3\nsplits: {train: {n: 4}}\n")
    assert load_config("quickstart").name == "mine"
    assert load_config("quickstart.yaml").name == "quickstart"  # no such file here: the built-in


def test_an_unknown_name_lists_the_builtins_in_one_line(capsys):
    with pytest.raises(ConfigError) as caught:
        config_file("quikstart")
    message = str(caught.value)
    assert message.startswith("quikstart: no such config file") and "quickstart" in message and "\n" not in message
    assert main(["render", "quikstart", "-o", "unused"]) == 2
    assert "study2022_64px" in capsys.readouterr().err


def test_a_path_in_a_folder_is_never_taken_for_a_builtin(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        read_yaml(tmp_path / "quickstart.yaml")


def test_configs_lists_every_builtin_with_its_kind(capsys):
    assert main(["configs"]) == 0
    rows = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()[:-2]}
    assert set(rows) == set(builtin_configs())
    assert rows["quickstart"] == "dataset" and rows["small_cnn_study2022_64px"] == "classifier"
    assert rows["benchmark"] == "benchmark" and rows["study_reveal"] == "study" and rows["study_exclusions"] == "rules"


def test_configs_show_prints_the_file_as_shipped(capsys):
    assert main(["configs", "show", "study2022_64px"]) == 0
    assert capsys.readouterr().out == (BUILTIN_CONFIGS / "study2022_64px.yaml").read_text()
    assert main(["configs", "show"]) == 2
    assert "name a config" in capsys.readouterr().err


@pytest.mark.models
def test_a_model_config_names_its_dataset_config_by_name(tmp_path):
    from two4two.models.training import parse_model_config

    raw = {"data": "data/x", "output_dir": str(tmp_path), "dataset_config": "study2022_64px"}
    assert parse_model_config(raw).dataset_config == BUILTIN_CONFIGS / "study2022_64px.yaml"
    with pytest.raises(ConfigError, match=r"^m\.yaml: dataset_config: nope: no such dataset config"):
        parse_model_config({**raw, "dataset_config": "nope"}, "m.yaml")
