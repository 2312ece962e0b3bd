"""The study runner over real HTTP (waitress on a loopback port, httpx clients): the whole flow,
the comprehension rule, balanced assignment, resuming, idempotent double submission, bad input
answered with a 4xx that changes nothing, the image route, and the export read back by the analysis.
Fifty concurrent participants check that every answer is stored exactly once (speed is measured by
benchmarks/study_load.py, not here)."""

from __future__ import annotations

import json
import random
import sqlite3
import threading
from types import SimpleNamespace

import pytest
from extras import imported

imported("study", "flask")  # the study app
httpx = imported("dev", "httpx")  # its test client

from study_fixtures import (  # noqa: E402
    db_dump,
    ANSWER_KEY,
    ManualClock,
    WebParticipant,
    comprehension_answers,
    make_bundle,
    manifest,
    running_server,
)
from two4two.cli import main  # noqa: E402
from two4two.errors import StorageError  # noqa: E402
from two4two.study.exclusions import DEFAULT_RULES, apply_exclusions  # noqa: E402
from two4two.study.responses import read_responses  # noqa: E402
from two4two.study.statistics import analyze  # noqa: E402
from two4two.study.app import COOKIE, create_app  # noqa: E402
from two4two.study.bundle import ATTRIBUTES, CONDITIONS, load_bundle, parse_manifest  # noqa: E402
from two4two.study.storage import Storage  # noqa: E402


@pytest.fixture
def study(tmp_path):
    bundle = load_bundle(make_bundle(tmp_path / "bundle"))
    clock = ManualClock()
    db = tmp_path / "responses.sqlite"
    app = create_app(bundle, db, clock=clock, rng=random.Random(0))
    with running_server(app) as url:
        yield SimpleNamespace(url=url, clock=clock, db=db, bundle=bundle, bundle_dir=tmp_path / "bundle", tmp=tmp_path)


def rows(db, sql, *args):
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def answers_for(seed: int) -> dict[str, str]:
    r = random.Random(seed)
    return {a: r.choice(["relevant", "irrelevant"]) for a in ATTRIBUTES}


def export(study, name="exported"):
    """`study responses -o DIR`: DIR/responses.csv (and every participant in DIR/responses_participants.csv)."""
    out = study.tmp / name
    assert main(["study", "responses", "--db", str(study.db), "--bundle", str(study.bundle_dir), "-o", str(out)]) == 0
    return out / "responses.csv"


def advance_by(clock, question_seconds, other_seconds=10.0):
    return lambda info: clock.advance(question_seconds if info["kind"] == "question" else other_seconds)


def walk_to(p: WebParticipant, kind: str, clock=None) -> dict:
    """Consent and submit pages (comprehension answered correctly) until a page of `kind` is shown."""
    p.consent()
    while True:
        info = p.page()
        if info["kind"] == kind:
            return info
        if clock:
            clock.advance(10)
        fields = comprehension_answers(p_condition(info), True) if info["kind"] == "comprehension" else {}
        if info["kind"] == "question":
            fields = {"attribute": info["attribute"], "answer": "relevant", "justification": "Because the grid shows it."}
        assert p.submit(info["seq"], **fields).status_code == 303


def p_condition(info) -> str:
    return next(c for c in CONDITIONS if any(name.startswith(f"q_{c}_") for name in info["radios"]))


# ---------------------------------------------------------------- the whole flow and the export


@pytest.mark.slow  # seven whole studies over HTTP, the export and its analysis
def test_participants_complete_and_the_export_is_what_analyze_reads(study, capsys):
    sent = {}
    plan = [  # (comprehension failures, seconds per question page)
        (0, 40.0), (1, 40.0), (0, 40.0), (0, 2.0), (2, 40.0), (0, 40.0), (0, 40.0),
    ]
    people = []
    for i, (fails, seconds) in enumerate(plan):
        p = WebParticipant(study.url)
        final = p.complete(answers_for(i), f"Participant {i} explains", fail_comprehension=fails,
                           on_page=advance_by(study.clock, seconds))
        people.append((p, final))
        sent[i] = answers_for(i)
        if fails >= 2:
            assert final["kind"] == "excluded" and final["code"] is None
        else:
            assert final["kind"] == "complete" and len(final["code"]) == 8
    out = export(study)
    printed = capsys.readouterr().out
    assert "wrote the answers of 6 completed participants" in printed and "(1 excluded, 0 unfinished)" in printed

    responses = read_responses(out)  # the analysis' own reader accepts the file
    assert len(responses) == 6 * len(ATTRIBUTES)
    by_pid = {}
    for r in responses:
        by_pid.setdefault(r.participant_id, []).append(r)
    assert len(by_pid) == 6
    completed = [i for i, (fails, _) in enumerate(plan) if fails < 2]
    for i in completed:
        own = [r for r in responses if r.justification.startswith(f"Participant {i} explains")]
        assert len(own) == len(ATTRIBUTES) and len({r.participant_id for r in own}) == 1
        assert {r.attribute: r.answer for r in own} == sent[i]
        assert all(r.expected == ANSWER_KEY[r.attribute] for r in own)
        assert all(r.justification == f"Participant {i} explains ({r.attribute})" for r in own)
        assert {r.comprehension_failures for r in own} == {plan[i][0]}
        assert {r.seconds for r in own} == {plan[i][1]}  # server-measured, exactly the clock's steps
        assert [r.attribute for r in own] == list(ATTRIBUTES)

    # The too-fast participant (5 × 2 s) is stored as answered and excluded by the analysis' rule.
    exclusions = apply_exclusions(responses, DEFAULT_RULES)
    fast = next(r.participant_id for r in responses if r.justification.startswith("Participant 3 "))
    assert exclusions.participant_reasons == {fast: ["answered_in_under_30s"]}
    analysis = analyze(responses)
    assert analysis.exclusions.excluded_participants == 1 and len(analysis.exclusions.kept) == 5 * len(ATTRIBUTES)

    # The participants report also lists the excluded one, with their failures and no code.
    report = (study.tmp / "exported" / "responses_participants.csv").read_text().splitlines()
    assert report[0].startswith("participant_id,condition,status,current_page,pages_submitted")
    excluded = [line for line in report[1:] if ",excluded," in line]
    assert len(excluded) == 1 and ",excluded,excluded,5,2," in excluded[0] and excluded[0].endswith(",")
    # Balanced: the excluded participant's place was given again, so 6 counted places are 2/2/2.
    counted = rows(study.db, "SELECT condition, COUNT(*) FROM participants WHERE status != 'excluded' GROUP BY condition")
    assert sorted(n for _, n in counted) == [2, 2, 2]
    for p, _ in people:
        p.close()


def test_comprehension_rule_back_to_the_tutorial_once_then_excluded(study):
    p = WebParticipant(study.url)
    info = walk_to(p, "comprehension")
    condition = p_condition(info)
    assert p.submit(info["seq"], **comprehension_answers(condition, False)).status_code == 303
    back = p.client.get("/study")
    assert 'data-page="tutorial"' in back.text and 'data-testid="retry-notice"' in back.text
    assert p.submit(info["seq"] + 1).status_code == 303
    again = p.page()
    assert again["kind"] == "comprehension"
    assert p.submit(again["seq"], **comprehension_answers(condition, False)).status_code == 303
    assert p.page()["kind"] == "excluded"
    assert rows(study.db, "SELECT status, comprehension_failures, completion_code FROM participants") == [("excluded", 2, None)]
    # An excluded participant cannot submit anything more.
    before = db_dump(study.db)
    r = p.submit(again["seq"] + 1, attribute="legs", answer="relevant", justification="x")
    assert r.status_code == 409 and "The study is over for you" in r.text and db_dump(study.db) == before


def test_assignment_is_balanced_under_concurrent_consent(study):
    clients = [WebParticipant(study.url) for _ in range(21)]
    threads = [threading.Thread(target=c.consent) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts = dict(rows(study.db, "SELECT condition, COUNT(*) FROM participants GROUP BY condition"))
    assert counts == {c: 7 for c in CONDITIONS}
    for c in clients:
        c.close()


def test_reload_and_coming_back_resume_where_the_participant_was(study):
    p = WebParticipant(study.url)
    info = walk_to(p, "question")
    assert p.submit(info["seq"], attribute="legs", answer="relevant", justification="Legs differ.").status_code == 303
    where = p.page()
    assert where["kind"] == "question" and where["attribute"] == "colour"
    # Coming back later in a new session of the same browser (same cookie): the first page sends them on.
    back = httpx.Client(base_url=study.url, cookies={COOKIE: p.client.cookies[COOKIE]}, follow_redirects=False)
    r = back.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/study"
    assert back.get("/study").text == p.client.get("/study").text
    # Consenting again from that browser does not create a second participant.
    assert back.post("/consent", data={"consent": "yes"}).status_code == 303
    assert rows(study.db, "SELECT COUNT(*) FROM participants") == [(1,)]
    back.close()
    p.close()


def test_double_submission_is_idempotent_and_a_changed_replay_is_refused(study):
    p = WebParticipant(study.url)
    info = walk_to(p, "question", study.clock)
    study.clock.advance(33)
    fields = dict(attribute="legs", answer="irrelevant", justification="The legs look the same.")
    assert p.submit(info["seq"], **fields).status_code == 303
    after_first = db_dump(study.db)
    study.clock.advance(5)
    again = p.submit(info["seq"], **fields)  # double click / re-POST after reload
    assert again.status_code == 303 and again.headers["location"] == "/study"
    assert db_dump(study.db) == after_first
    changed = p.submit(info["seq"], **{**fields, "answer": "relevant"})
    assert changed.status_code == 409 and "already submitted" in changed.text
    assert db_dump(study.db) == after_first
    assert rows(study.db, "SELECT attribute, answer, seconds FROM answers") == [("legs", "irrelevant", 33.0)]
    p.close()


# ---------------------------------------------------------------- bad input: a clear 4xx, nothing changes


def _bad_requests(info, token, other_token):
    seq, ok = str(info["seq"]), {"attribute": "legs", "answer": "relevant", "justification": "Fine."}
    return [
        ("oversized justification", {"seq": seq, **ok, "justification": "x" * 2001}, token, 400,
         "justification has 2001 characters; at most 2000 are allowed"),
        ("request too large", {"seq": seq, **ok, "justification": "x" * 300_000}, token, 413, "larger than 256 KiB"),
        ("unknown attribute", {"seq": seq, **ok, "attribute": "hue"}, token, 400,
         "attribute &#39;hue&#39; is not allowed; expected one of legs, colour, background, shape, rotation_bending"),
        ("another page's attribute", {"seq": seq, **ok, "attribute": "shape"}, token, 400, "it asks about &#39;legs&#39;"),
        ("answer not allowed", {"seq": seq, **ok, "answer": "maybe"}, token, 400,
         "answer: &#39;maybe&#39; is not allowed; choose one of relevant, irrelevant"),
        ("empty justification", {"seq": seq, **ok, "justification": "   "}, token, 400, "at least 1 are required"),
        ("unknown field", {"seq": seq, **ok, "participant_id": "P1"}, token, 400, "unknown form field(s) &#39;participant_id&#39;"),
        ("page number from the future", {**ok, "seq": str(info["seq"] + 1)}, token, 409, "not the page you are on"),
        ("page number not a number", {**ok, "seq": "4; DROP TABLE answers"}, token, 400, "page number"),
        ("page number in other digits", {**ok, "seq": "²"}, token, 400, "page number"),
        ("replayed earlier page, changed", {"seq": "0", "extra": "1"}, token, 409, "already submitted"),
        ("tampered token", {"seq": seq, **ok}, token[:-1] + ("A" if token[-1] != "A" else "B"), 403, "no place in the study"),
        ("token of the wrong form", {"seq": seq, **ok}, "../../etc", 403, "no place in the study"),
        ("no token", {"seq": seq, **ok}, None, 403, "no place in the study"),
    ]


def test_bad_input_gets_a_clear_4xx_and_changes_nothing(study):
    p, other = WebParticipant(study.url), WebParticipant(study.url)
    info = walk_to(p, "question", study.clock)
    walk_to(other, "explanation", study.clock)
    token, other_token = p.client.cookies[COOKIE], other.client.cookies[COOKIE]
    for name, data, cookie, status, message in _bad_requests(info, token, other_token):
        before = db_dump(study.db)
        headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
        with httpx.Client(base_url=study.url) as raw:
            r = raw.post("/study", data=data, headers=headers)
        assert (r.status_code, message in r.text) == (status, True), (name, r.status_code, r.text[-600:])
        assert db_dump(study.db) == before, name
    # After all that, both participants are exactly where they were and can go on.
    assert p.page() == info
    assert other.page()["kind"] == "explanation"
    assert p.submit(info["seq"], attribute="legs", answer="relevant", justification="Fine.").status_code == 303
    p.close()
    other.close()


def test_a_participant_reaches_only_their_own_data(study):
    a, b = WebParticipant(study.url), WebParticipant(study.url)
    walk_to(a, "question", study.clock)
    b_info = walk_to(b, "question", study.clock)
    b_public = rows(study.db, "SELECT public_id FROM participants ORDER BY id")[1][0]
    token_hash = rows(study.db, "SELECT token_hash FROM participants ORDER BY id")[1][0]
    before = db_dump(study.db)
    for cookie in (b_public, token_hash):  # what a leaked export or database would reveal
        r = httpx.get(f"{study.url}/study", headers={"Cookie": f"{COOKIE}={cookie}"})
        assert r.status_code == 403
    # A's submission with B's page number only ever touches A's rows.
    r = a.submit(b_info["seq"], attribute="legs", answer="irrelevant", justification="A's own words.")
    assert r.status_code == 303
    changed = [line for line in db_dump(study.db) if line not in before]
    assert len(changed) == 3 and all("VALUES(1," in line for line in changed)  # A's participant row, page, answer
    assert sum("A''s own words" in line for line in changed) == 2
    assert rows(study.db, "SELECT p.id FROM answers a JOIN participants p ON p.id = a.participant") == [(1,)]
    assert b.page() == b_info
    a.close()
    b.close()


def test_images_come_only_from_the_manifest(study):
    with httpx.Client(base_url=study.url) as c:
        r = c.get("/bundle/stimuli/baseline.png")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.content == (study.bundle_dir / "stimuli" / "baseline.png").read_bytes()
        for path in ("/bundle/manifest.json", "/bundle/stimuli/baseline.json", "/bundle/../responses.sqlite",
                     "/bundle/%2e%2e/responses.sqlite", "/bundle/stimuli/%2e%2e/manifest.json", "/bundle//etc/passwd"):
            assert c.get(path, follow_redirects=True).status_code == 404, path
        page = c.get("/")
        assert page.status_code == 200 and "default-src 'none'" in page.headers["content-security-policy"]
        assert "http" not in page.text.split("</header>")[0].replace(study.url, "")  # nothing from elsewhere


def test_no_participant_data_in_logs(study, caplog, capfd):
    caplog.set_level("DEBUG")
    p = WebParticipant(study.url)
    p.complete(answers_for(1), "A very private sentence", on_page=advance_by(study.clock, 40))
    token = p.client.cookies[COOKIE]
    p.submit(0, justification="x" * 3000)  # an error path too
    server_side = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]  # not the test's client
    logged = "\n".join(r.getMessage() for r in server_side) + "".join(capfd.readouterr())
    assert "private sentence" not in logged and token not in logged
    p.close()


# ---------------------------------------------------------------- databases and the command line


def test_a_database_belongs_to_one_bundle(study, capsys):
    walk_to(WebParticipant(study.url), "tutorial")
    raw = manifest()
    raw["answer_key"]["shape"] = "relevant"
    other_dir = make_bundle(study.tmp / "other")
    (other_dir / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(StorageError, match="holds responses to another bundle"):
        Storage(study.db, load_bundle(other_dir))
    out = study.tmp / "exported"
    assert main(["study", "responses", "--db", str(study.db), "--bundle", str(other_dir), "-o", str(out)]) == 2
    assert main(["study", "serve", str(other_dir), "--db", str(study.db), "--port", "9"]) == 2
    assert main(["study", "responses", "--db", str(study.tmp / "none.sqlite"), "--bundle", str(other_dir), "-o", str(out)]) == 2
    assert main(["study", "serve", str(study.tmp / "no_bundle")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("two4two: error: ") for line in err)
    assert "use another --db" in err[0] and "no such responses database" in err[2] and "no such bundle directory" in err[3]
    assert not out.exists()
    (study.tmp / "junk.sqlite").write_text("not a database at all" * 100)
    with pytest.raises(StorageError, match="not a responses database"):
        Storage(study.tmp / "junk.sqlite", parse_manifest(manifest()))


@pytest.mark.slow  # 50 participants at once: about 10 s
def test_fifty_concurrent_participants_are_stored_exactly_once(study):
    """The bounded load test: 50 participants at once; each answer is in the export exactly once."""
    n = 50
    errors = []

    def run(i):
        p = WebParticipant(study.url)
        try:
            p.complete(answers_for(i), f"Load participant {i:02d}", fail_comprehension=i % 5 == 0)
        except Exception as exc:  # noqa: BLE001  (reported below)
            errors.append((i, repr(exc)))
        finally:
            p.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    responses = read_responses(export(study))
    assert len(responses) == n * len(ATTRIBUTES)
    seen = {}
    for r in responses:
        i = int(r.justification.split()[2])
        key = (i, r.attribute)
        assert key not in seen
        seen[key] = r
        assert r.answer == answers_for(i)[r.attribute] and r.comprehension_failures == (i % 5 == 0)
    assert set(seen) == {(i, a) for i in range(n) for a in ATTRIBUTES}
    assert len({r.participant_id for r in responses}) == n
    counts = dict(rows(study.db, "SELECT condition, COUNT(*) FROM participants GROUP BY condition"))
    assert sorted(counts.values()) == [16, 17, 17]


def test_study_serve_runs_the_app_and_stops_on_ctrl_c(tmp_path, wait_until):
    """The real command in its own process: pages, the stylesheet and a bundle image are served."""
    import signal
    import socket
    import subprocess
    import sys

    bundle_dir = make_bundle(tmp_path / "bundle")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = tmp_path / "r.sqlite"
    def ignore_ctrl_c():  # as a wrapper or test runner may hand it down: Ctrl+C must still stop the server
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

    server = subprocess.Popen(
        [sys.executable, "-m", "two4two.cli", "study", "serve", str(bundle_dir), "--port", str(port), "--db", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ignore_ctrl_c,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        def answers() -> bool:
            assert server.poll() is None, server.stderr.read()  # a server that died is a failure, not a wait
            try:
                return httpx.get(url + "/", timeout=1).status_code > 0
            except httpx.TransportError:
                return False

        assert wait_until(answers, timeout=30, interval=0.1), "the server did not answer within 30 s"
        first = httpx.get(url + "/", timeout=5)
        assert first.status_code == 200 and 'data-page="consent"' in first.text
        assert httpx.get(url + "/static/study.css").status_code == 200
        assert httpx.get(url + "/static/study.js").headers["content-type"].startswith("text/javascript")
        assert httpx.get(url + "/bundle/tutorial/peeky.png").content == (bundle_dir / "tutorial" / "peeky.png").read_bytes()
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=20)
    assert server.returncode == 0, err
    assert f"http://127.0.0.1:{port}/" in out and f"stopped; the responses are in {db}" in out
    assert db.is_file()


def test_templates_and_static_files_are_package_data():
    """pyproject's package-data globs cover every template and static file (else a wheel lacks them)."""
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["two4two.study"]
    package = root / "two4two" / "study"
    files = [p.relative_to(package).as_posix() for d in ("templates", "static") for p in (package / d).iterdir()]
    assert len(files) >= 12
    assert [f for f in files if not any(fnmatch.fnmatch(f, g) for g in globs)] == []
