"""Fuzzing the readers of user input with hypothesis: dataset and training configs, parameter
JSON Lines, responses CSVs and the study app's forms.

Each reader gets arbitrary structures and small mutations of a valid input (one value or key
replaced, one line cut or doubled). The only outcomes allowed are success or the project's own
one-line error (a Two4TwoError subclass with a single-line message): never a bare KeyError,
TypeError or a traceback, and never partial output (a refused render creates no directory; a
refused form leaves the database as it was). `derandomize=True` keeps CI deterministic: the same
examples every run. `TWO4TWO_FUZZ_SCALE=20 pytest tests/test_fuzz.py` tries twenty times as many.
"""

from __future__ import annotations

import copy
import json
import os
import random
import sqlite3
import tempfile
from pathlib import Path

import pytest
from extras import imported
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from two4two.config import parse_config, read_yaml
from two4two.errors import ConfigError, ParameterError, ResponsesError, Two4TwoError
from two4two.parameters import SceneParameters, iter_jsonl
from two4two.study.responses import parse_responses, read_responses, responses_csv

ROOT = Path(__file__).resolve().parents[1]
SCALE = float(os.environ.get("TWO4TWO_FUZZ_SCALE", "1"))


def examples(n: int) -> int:
    return max(1, int(n * SCALE))


FUZZ = settings(derandomize=True, deadline=None, max_examples=examples(150),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Arbitrary JSON-like (and YAML-like) values: what a hand-edited file can hold.
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["", "0", "-1", "1e309", "nan", "train", "test", "study2022"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


def one_line_error(exc: BaseException, kind: type[Two4TwoError]) -> None:
    assert isinstance(exc, kind), f"{type(exc).__name__}: {exc}"
    message = str(exc)
    assert message and "\n" not in message and "Traceback" not in message, message


def paths_of(tree, prefix=()):
    """Every (path, value) in a nested dict/list, the root included."""
    yield prefix, tree
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from paths_of(value, prefix + (key,))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from paths_of(value, prefix + (i,))


@st.composite
def mutated(draw, valid):
    """`valid` with one place replaced by an arbitrary value, or one key renamed or dropped."""
    tree = copy.deepcopy(valid)
    places = [p for p, _ in paths_of(tree) if p]
    path = draw(st.sampled_from(places))
    parent = tree
    for step in path[:-1]:
        parent = parent[step]
    how = draw(st.sampled_from(["replace", "rename", "drop"] if isinstance(parent, dict) else ["replace"]))
    if how == "replace":
        parent[path[-1]] = draw(values)
    elif how == "rename":
        parent[draw(st.text(max_size=10))] = parent.pop(path[-1])
    else:
        del parent[path[-1]]
    return tree


VALID_DATASET = read_yaml(ROOT / "configs" / "quickstart.yaml")
VALID_DATASET["splits"]["validation"] = {"n": 8, "sampler_args": {"labeling_error": {"bernoulli": 0.1}}}
VALID_MODEL = read_yaml(ROOT / "configs" / "small_cnn_study2022_64px.yaml")


# -- dataset configs ----------------------------------------------------------------------


@pytest.mark.slow
@FUZZ
@given(raw=st.one_of(values, mutated(VALID_DATASET)))
def test_dataset_config_is_parsed_or_refused_in_one_line(raw):
    try:
        config = parse_config(raw, "fuzz.yaml")
    except ConfigError as exc:
        one_line_error(exc, ConfigError)
        assert str(exc).startswith("fuzz.yaml")  # the message names the file
    else:
        assert config.splits  # a config that parses has something to render


@settings(FUZZ, max_examples=examples(60))
@given(text=st.one_of(st.text(max_size=200), st.builds(lambda v: json.dumps(v), values)))
def test_yaml_reader_takes_any_text(tmp_path, text):
    path = tmp_path / "any.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        read_yaml(path)
    except ConfigError as exc:
        one_line_error(exc, ConfigError)
        assert str(path) in str(exc)


@pytest.mark.slow
@settings(FUZZ, max_examples=examples(40))
@given(raw=mutated(VALID_DATASET))
def test_a_refused_config_renders_nothing(tmp_path, raw):
    """The CLI refuses a bad config before it creates anything: no output directory, exit 2."""
    from two4two.cli import main

    try:
        parse_config(raw, "fuzz.yaml")
    except ConfigError:
        pass
    else:
        return  # valid mutations would render; that is the render tests' job
    config, out = tmp_path / "bad.yaml", tmp_path / "out"
    config.write_text(json.dumps(raw), encoding="utf-8")
    assert main(["render", str(config), "-o", str(out)]) == 2
    assert not out.exists()


# -- training configs ---------------------------------------------------------------------


@FUZZ
@given(raw=st.one_of(values, mutated(VALID_MODEL)))
def test_model_config_is_parsed_or_refused_in_one_line(raw):
    imported("models", "torch")
    from two4two.models.training import parse_model_config

    try:
        config = parse_model_config(raw, "fuzz.yaml")
    except ConfigError as exc:
        one_line_error(exc, ConfigError)
    else:
        assert config.training.epochs >= 1 and config.training.batch_size >= 1


# -- parameter JSON Lines -----------------------------------------------------------------

VALID_LINE = json.loads(SceneParameters(id="fuzz-0").to_json())


@st.composite
def jsonl_texts(draw):
    kind = draw(st.sampled_from(["mutated", "arbitrary", "text"]))
    if kind == "mutated":
        lines = [json.dumps(VALID_LINE), json.dumps(draw(mutated(VALID_LINE)), allow_nan=True)]
    elif kind == "arbitrary":
        lines = [json.dumps(draw(values), allow_nan=True)]
    else:
        lines = [draw(st.text(max_size=80))]
    if draw(st.booleans()):
        cut = draw(st.integers(0, max(0, len(lines[-1]) - 1)))
        lines[-1] = lines[-1][:cut]  # a line written half
    return "\n".join(lines) + "\n"


@FUZZ
@given(text=jsonl_texts())
def test_parameters_reader_reads_or_names_the_line(tmp_path, text):
    path = tmp_path / "parameters.jsonl"
    path.write_text(text, encoding="utf-8")
    try:
        params = list(iter_jsonl(path))
    except ParameterError as exc:
        one_line_error(exc, ParameterError)
        assert str(exc).startswith(f"{path}:")  # file and line number
    else:
        for p in params:  # what was read is a valid scene: it survives a round trip
            assert SceneParameters.from_dict(json.loads(p.to_json())) == p


# -- responses CSV ------------------------------------------------------------------------


def _valid_csv() -> str:
    from two4two.study.simulate import simulate_responses

    return responses_csv(simulate_responses(n_per_condition=2, seed=0))


VALID_CSV = _valid_csv()


@st.composite
def csv_texts(draw):
    lines = VALID_CSV.splitlines()
    kind = draw(st.sampled_from(["cell", "line", "arbitrary"]))
    if kind == "arbitrary":
        return draw(st.text(max_size=300))
    i = draw(st.integers(0, len(lines) - 1))
    if kind == "line":
        how = draw(st.sampled_from(["drop", "double", "cut"]))
        if how == "drop":
            del lines[i]
        elif how == "double":
            lines.insert(i, lines[i])
        else:
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
    else:
        cells = lines[i].split(",")
        j = draw(st.integers(0, len(cells) - 1))
        cells[j] = draw(st.one_of(st.text(max_size=10), st.sampled_from(['"', '""', "\n", "-1", "1e999", "nan", ""])))
        lines[i] = ",".join(cells)
    return "\n".join(lines) + "\n"


@FUZZ
@given(text=csv_texts())
def test_responses_reader_reads_or_names_the_problem(text):
    try:
        rows = parse_responses(text, "responses.csv")
    except ResponsesError as exc:
        one_line_error(exc, ResponsesError)
        assert str(exc).startswith("responses.csv")
    else:
        assert rows and parse_responses(responses_csv(rows), "again.csv") == rows


@settings(FUZZ, max_examples=examples(40))
@given(data=st.binary(max_size=200))
def test_responses_file_of_any_bytes(tmp_path, data):
    path = tmp_path / "responses.csv"
    path.write_bytes(data)
    try:
        read_responses(path)
    except ResponsesError as exc:
        one_line_error(exc, ResponsesError)
        assert str(path) in str(exc)


# -- the study app's forms ----------------------------------------------------------------

FIELD_NAMES = ["seq", "consent", "attribute", "answer", "justification",
               "q_baseline_1", "q_baseline_2", "q_counterfactual_1", "q_concepts_1"]
FIELD_VALUES = ["yes", "no", "", "0", "1", "2", "99", "-1", "legs", "colour", "background", "shape",
                "rotation_bending", "inward", "outward", "how sure the system is", "the system's output"]
forms = st.lists(st.tuples(st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=8)),
                           st.one_of(st.sampled_from(FIELD_VALUES), st.text(max_size=30), st.just("x" * 3000))),
                 max_size=6)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    imported("study", "flask")
    from study_fixtures import make_bundle

    from two4two.study.bundle import load_bundle

    return load_bundle(make_bundle(tmp_path_factory.mktemp("fuzz") / "bundle"))


def _snapshot(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def _walk_to(client, page: str) -> dict:
    """Consent and answer correctly until the page of kind `page`; returns that page's info."""
    from study_fixtures import COMPREHENSION, page_info

    assert client.post("/consent", data={"consent": "yes"}).status_code == 303
    for _ in range(20):
        info = page_info(client.get("/study").get_data(as_text=True))
        if info["kind"] == page:
            return info
        fields = {"seq": str(info["seq"])}
        if info["kind"] == "comprehension":
            condition = next(c for c, qs in COMPREHENSION.items() if f"q_{qs[0][0]}" in info["radios"])
            fields.update({f"q_{qid}": answer for qid, _, _, answer in COMPREHENSION[condition]})
        elif info["kind"] == "question":
            fields.update(attribute=info["attribute"], answer=_first_choice(client), justification="because of the legs")
        assert client.post("/study", data=fields).status_code == 303
    raise AssertionError(f"never reached a {page} page")


def _first_choice(client) -> str:
    import re

    return re.search(r'name="answer" value="([^"]*)"', client.get("/study").get_data(as_text=True)).group(1)


@pytest.mark.slow
@settings(FUZZ, max_examples=examples(60))
@given(page=st.sampled_from(["introduction", "comprehension", "question"]), form=forms, right_seq=st.booleans())
def test_study_forms_are_accepted_or_refused_without_change(bundle, page, form, right_seq):
    from werkzeug.datastructures import MultiDict

    from two4two.study.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "responses.sqlite"
        app = create_app(bundle, db, clock=lambda: 1_800_000_000.0, rng=random.Random(0))
        client = app.test_client()
        consent = client.post("/consent", data=MultiDict(form))
        assert consent.status_code in (200, 303, 400), consent.status_code  # declined page, a place, or refused
        client = app.test_client()  # a fresh browser for the study pages
        info = _walk_to(client, page)
        if right_seq:
            form = [(k, v) for k, v in form if k != "seq"] + [("seq", str(info["seq"]))]
        before = _snapshot(db)
        response = client.post("/study", data=MultiDict(form))
        assert response.status_code in (303, 400, 409), (response.status_code, response.get_data(as_text=True)[:300])
        if response.status_code != 303:
            assert _snapshot(db) == before  # a refused form stores nothing
            assert "Traceback" not in response.get_data(as_text=True)
