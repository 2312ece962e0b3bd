"""A small valid study bundle written directly (tiny PNGs, a manifest per the bundle format),
and a study server on a free loopback port in a background thread — shared by the study app tests
and benchmarks/study_load.py. Imports neither bpy nor torch."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from two4two.study.bundle import ATTRIBUTES, CONDITIONS

ANSWER_KEY = {"legs": "relevant", "colour": "relevant", "background": "irrelevant", "shape": "irrelevant", "rotation_bending": "irrelevant"}
LABELS = {"legs": "legs' position", "colour": "colour", "background": "background", "shape": "blocks' shape", "rotation_bending": "rotation and bending"}
# Comprehension questions of each condition: (id, text, choices, answer)
COMPREHENSION = {
    "baseline": [("baseline_1", "What do the columns show?", ["image sizes", "how sure the system is", "colours"], "how sure the system is"),
                 ("baseline_2", "Peeky's legs are …", ["inward", "outward"], "inward")],
    "counterfactual": [("counterfactual_1", "What changes along a row?", ["the system's output", "the camera"], "the system's output")],
    "concepts": [("concepts_1", "A concept is …", ["a highlighted pattern", "a label"], "a highlighted pattern")],
}


def _png(path: Path, seed: int, size: int = 32) -> None:
    """A small picture: a coloured block 'animal' on a shaded background (stimuli: a 2 × 5 grid of them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cells = (2, 5) if path.parent.name == "stimuli" else (1, 1)
    tile = size // cells[1] if cells != (1, 1) else size
    rows = []
    for r in range(cells[0]):
        row = []
        for c in range(cells[1]):
            y, x = np.mgrid[0:tile, 0:tile] / tile
            img = np.stack([0.5 + 0.3 * y, 0.6 + 0.2 * x, 0.8 - 0.2 * y], -1) * rng.uniform(0.6, 1.0)
            colour = rng.uniform(0.1, 0.9, 3)
            spread = 0.1 + 0.05 * c  # columns: legs further apart
            for bx in (0.5 - spread, 0.5 + spread):
                img[int(0.55 * tile):int(0.8 * tile), int(bx * tile) - tile // 12:int(bx * tile) + tile // 12] = colour
            img[int(0.35 * tile):int(0.55 * tile), int(0.25 * tile):int(0.75 * tile)] = colour
            row.append(img)
        rows.append(np.concatenate(row, 1))
    pixels = (np.concatenate(rows, 0).clip(0, 1) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)


def manifest(conditions=CONDITIONS, max_length: int = 2000) -> dict:
    return {
        "format": "two4two-study-bundle",
        "version": 1,
        "title": "Which features does the system use?",
        "created": "2026-11-22T15:00:00+00:00",
        "model": {"path": "models/x", "arch": "small_cnn"},
        "dataset": {"root": "data/x", "split": "test"},
        "consent": {"text": "You take part voluntarily.\n\nYour answers are stored without your name."},
        "introduction": {"text": "Peeky and Stretchy are two animals.\n\nThey differ in their legs.",
                         "images": ["tutorial/peeky.png", "tutorial/stretchy.png"]},
        "conditions": [
            {
                "name": name,
                "title": f"Explanation: {name}",
                "tutorial": {"text": f"How to read the {name} explanation.", "images": [f"tutorial/{name}_example.png"]},
                "comprehension": [{"id": i, "text": t, "choices": c, "answer": a} for i, t, c, a in COMPREHENSION[name]],
                "stimulus": {"image": f"stimuli/{name}.png", "caption": f"The {name} grid.", "images_shown": 50},
            }
            for name in conditions
        ],
        "questions": [
            {"attribute": a, "label": LABELS[a], "text": f"How relevant is the {LABELS[a]} for the system?",
             "choices": ["relevant", "irrelevant"],
             "justification": {"required": True, "min_length": 1, "max_length": max_length}}
            for a in ATTRIBUTES
        ],
        "answer_key": dict(ANSWER_KEY),
        "answer_key_rule": {"note": "test fixture"},
        "completion": {"text": "Thank you! Your completion code is below."},
    }


def make_bundle(root: Path, conditions=CONDITIONS, **kw) -> Path:
    """Write a complete bundle (manifest.json, stimuli, tutorial images) into `root`."""
    root = Path(root)
    raw = manifest(conditions, **kw)
    images = set(raw["introduction"]["images"])
    for c in raw["conditions"]:
        images.update(c["tutorial"]["images"])
        images.add(c["stimulus"]["image"])
        (root / "stimuli").mkdir(parents=True, exist_ok=True)
        (root / "stimuli" / f"{c['name']}.json").write_text("{}")
    for i, rel in enumerate(sorted(images)):
        _png(root / rel, i, size=160 if rel.startswith("stimuli/") else 32)
    (root / "manifest.json").write_text(json.dumps(raw, indent=2))
    return root


def db_dump(db) -> list[str]:
    """Every row of a responses database, to show that a refused request changed nothing."""
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


class ManualClock:
    """A clock the tests move by hand (thread-safe), so recorded seconds are exact."""

    def __init__(self, start: float = 1_800_000_000.0):
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


@contextmanager
def running_server(app, threads: int = 8) -> Iterator[str]:
    """Serve `app` with waitress (as `study serve` does) on a free 127.0.0.1 port in a background
    thread; yields the base URL. On exit the thread's event loop stops and closes every connection."""
    from waitress import wasyncore
    from waitress.server import create_server

    server = create_server(app, host="127.0.0.1", port=0, threads=threads, ident="two4two-study-test")
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            wasyncore.loop(timeout=0.05, map=server._map, use_poll=True, count=1)
        wasyncore.close_all(server._map)
        server.task_dispatcher.shutdown()

    thread = threading.Thread(target=loop, name="study-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        stop.set()
        thread.join(timeout=30)
        if thread.is_alive():
            raise RuntimeError("study server thread did not stop")


# ---------------------------------------------------------------- a participant speaking HTTP (no browser)

import html as _html  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402


def page_info(text: str) -> dict:
    """What the server rendered: page kind, sequence number, attribute, comprehension radio choices."""
    kind = re.search(r'<main data-page="(\w*)"', text)
    seq = re.search(r'name="seq" value="(\d+)"', text)
    attribute = re.search(r'name="attribute" value="(\w+)"', text)
    radios: dict[str, list[str]] = {}
    for name, value in re.findall(r'type="radio" name="(q_\w+)" value="([^"]*)"', text):
        radios.setdefault(name, []).append(_html.unescape(value))
    code = re.search(r'data-testid="completion-code">(\w+)<', text)
    trial = re.search(r'name="trial" value="([^"]*)"', text)
    step = re.search(r'name="step" value="([^"]*)"', text)
    return {
        "trial": _html.unescape(trial.group(1)) if trial else None,
        "step": _html.unescape(step.group(1)) if step else None,
        "choices": [_html.unescape(v) for v in re.findall(r'name="answer" value="([^"]*)" data-testid="choice"', text)],
        "kind": kind.group(1) if kind else None,
        "seq": int(seq.group(1)) if seq else None,
        "attribute": attribute.group(1) if attribute else None,
        "radios": radios,
        "code": code.group(1) if code else None,
    }


def comprehension_answers(condition: str, correct: bool) -> dict[str, str]:
    """Form fields answering a condition's comprehension questions, all right or the first one wrong."""
    out = {}
    for i, (qid, _, choices, answer) in enumerate(COMPREHENSION[condition]):
        out[f"q_{qid}"] = answer if correct or i > 0 else next(c for c in choices if c != answer)
    return out


class WebParticipant:
    """One participant's browser session (its own cookie jar) driving the study over HTTP with httpx."""

    def __init__(self, base_url: str):
        import httpx

        self.client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=60)
        self.latencies: list[float] = []
        self.condition: str | None = None

    def close(self) -> None:
        self.client.close()

    def request(self, method: str, url: str, **kw):
        start = time.perf_counter()
        response = self.client.request(method, url, **kw)
        self.latencies.append(time.perf_counter() - start)
        return response

    def consent(self):
        response = self.request("POST", "/consent", data={"consent": "yes"})
        assert response.status_code == 303, response.text[:300]
        return response

    def page(self) -> dict:
        response = self.request("GET", "/study")
        assert response.status_code == 200, response.text[:300]
        return page_info(response.text)

    def submit(self, seq: int, **fields):
        return self.request("POST", "/study", data={"seq": str(seq), **fields})

    def walk(self, fields_for, on_page=None) -> dict:
        """Consent, then submit each page with `fields_for(info)` until the study ends; returns the
        final page's info. `on_page(info)` runs before each submission (e.g. to move a test clock)."""
        self.consent()
        while True:
            info = self.page()
            if info["kind"] in ("complete", "excluded"):
                return info
            if on_page:
                on_page(info)
            response = self.submit(info["seq"], **fields_for(info))
            assert response.status_code == 303, (info["kind"], response.status_code, response.text[:500])

    def complete_trials(self, choose, on_page=None) -> dict:
        """Walk a trial-paradigm bundle to the end, answering comprehension questions right and
        each trial step with `choose(info)`."""
        def fields_for(info: dict) -> dict[str, str]:
            if info["kind"] == "comprehension":
                return {name: TRIAL_COMPREHENSION_ANSWER for name in info["radios"]}
            if info["kind"] == "trial":
                return {"trial": info["trial"], "step": info["step"], "answer": choose(info)}
            return {}

        return self.walk(fields_for, on_page)

    def complete(self, answers: dict[str, str], justification: str, fail_comprehension: int = 0, on_page=None) -> dict:
        """Walk the 2022 study to the end; `answers` per attribute; the first `fail_comprehension`
        comprehension attempts fail."""
        failures = 0

        def fields_for(info: dict) -> dict[str, str]:
            nonlocal failures
            if info["kind"] == "comprehension":
                self.condition = next(c for c, qs in COMPREHENSION.items() if f"q_{qs[0][0]}" in info["radios"])
                fields = comprehension_answers(self.condition, correct=failures >= fail_comprehension)
                failures += 1
                return fields
            if info["kind"] == "question":
                a = info["attribute"]
                return {"attribute": a, "answer": answers[a], "justification": f"{justification} ({a})"}
            return {}

        return self.walk(fields_for, on_page)


# ---------------------------------------------------------------- trial-paradigm bundles

TRIAL_COMPREHENSION_ANSWER = "one picture at a time"
TRIAL_CONDITIONS = {
    "progressive_reveal": ("reveal",),
    "accept_reject": ("confidence", "grad_cam", "knn"),
    "guess_output": ("no_map", "grad_cam"),
}
REVEAL_METHODS = ("gradient", "guided_backprop", "grad_cam")


def trial_manifest(paradigm: str, items: int = 6) -> dict:
    """A small valid manifest of a trial paradigm: `items` pictures (stimuli/item<k>.png, label k % 2),
    every condition's trials, a draw that leaves room for balancing."""
    from two4two.study.paradigms import CLASS_NAMES, DONT_KNOW, NO, REVEAL_LEVELS, YES

    trials = []
    for condition in TRIAL_CONDITIONS[paradigm]:
        for k in range(items):
            label, image = CLASS_NAMES[k % 2], f"pictures/item{k}.png"
            if paradigm == "progressive_reveal":
                for method in REVEAL_METHODS:
                    steps = [{"id": f"L{level}", "prompt": "Which animal is this?", "text": f"{level} % of the pixels are shown.",
                              "images": [{"image": f"pictures/item{k}_{level % 3}.png"}], "choices": [CLASS_NAMES[0], CLASS_NAMES[1], DONT_KNOW],
                              "correct": label, "info": {"level": level}} for level in REVEAL_LEVELS]
                    trials.append({"id": f"{condition}-{method}-{k}", "condition": condition, "group": method, "item": f"item{k}",
                                   "steps": steps, "info": {"method": method, "label": label}})
            elif paradigm == "accept_reject":
                bin_, right = ("easy", "medium", "hard")[k % 3], k % 4 != 3
                predicted = label if right else CLASS_NAMES[1 - k % 2]
                images = [{"image": image, "caption": "the picture"}]
                if condition == "grad_cam":
                    images.append({"image": f"pictures/item{k}_0.png", "caption": "where the system looked"})
                if condition == "knn":
                    images += [{"image": f"pictures/item{(k + j) % items}.png", "caption": f"training picture {j}"} for j in (1, 2, 3)]
                steps = [{"id": "decide", "prompt": "Is the system's prediction correct?",
                          "text": f"The system says: {predicted} (confidence {0.6 + 0.05 * k:.0%}).", "images": images,
                          "choices": [YES, NO], "correct": YES if right else NO}]
                trials.append({"id": f"{condition}-{k}", "condition": condition, "group": bin_, "item": f"item{k}", "steps": steps,
                               "info": {"label": label, "predicted": predicted, "confidence": round(0.6 + 0.05 * k, 3), "bin": bin_}})
            else:
                right = k % 3 != 0
                predicted = label if right else CLASS_NAMES[1 - k % 2]
                images = [{"image": image}] + ([{"image": f"pictures/item{k}_1.png", "caption": "the map"}] if condition == "grad_cam" else [])
                steps = [{"id": "guess", "prompt": "What did the system predict?", "text": f"This is a {label}.", "images": images,
                          "choices": list(CLASS_NAMES), "correct": predicted}]
                trials.append({"id": f"{condition}-{k}", "condition": condition, "group": "correct" if right else "misclassified",
                               "item": f"item{k}", "steps": steps, "info": {"label": label, "predicted": predicted}})
    draw = {"progressive_reveal": {m: 1 for m in REVEAL_METHODS}, "accept_reject": {"easy": 1, "medium": 1, "hard": 1},
            "guess_output": {"misclassified": 1, "correct": 2}}[paradigm]
    return {
        "format": "two4two-study-bundle", "version": 1, "paradigm": paradigm,
        "title": f"A {paradigm} study", "created": "2026-12-04T15:00:00+00:00",
        "consent": {"text": "You take part voluntarily."},
        "introduction": {"text": "Peeky and Stretchy are two animals.", "images": ["tutorial/peeky.png"]},
        "conditions": [{"name": c, "title": f"Condition {c}", "tutorial": {"text": f"How trials of {c} work."},
                        "comprehension": [{"id": "how", "text": "How are pictures shown?",
                                           "choices": [TRIAL_COMPREHENSION_ANSWER, "all at once"], "answer": TRIAL_COMPREHENSION_ANSWER}]}
                       for c in TRIAL_CONDITIONS[paradigm]],
        "trials": trials,
        "order": {"draw": draw, "distinct_items": paradigm != "progressive_reveal", "shuffle": True},
        "timing": {"too_fast_seconds": 1.0},
        "completion": {"text": "Thank you!"},
    }


def make_trial_bundle(root: Path, paradigm: str, items: int = 6) -> Path:
    """Write a trial-paradigm bundle: manifest.json and every picture it names."""
    root = Path(root)
    raw = trial_manifest(paradigm, items)
    images = set(raw["introduction"]["images"])
    for t in raw["trials"]:
        images.update(i["image"] for s in t["steps"] for i in s["images"])
    for i, rel in enumerate(sorted(images)):
        _png(root / rel, i, size=32)
    (root / "manifest.json").write_text(json.dumps(raw, indent=2))
    return root
