"""The study runner: a small server-rendered web app that walks a participant through one bundle.

Pages, in order: consent → introduction → tutorial of the condition → comprehension questions
(a failure sends the participant back to the tutorial once; a second failure ends the study
without a completion code, as in the paper) → the condition's explanation → one page per
attribute question with a required justification → completion code. In a trial paradigm
(`two4two.study.paradigms`) the explanation and the questions give way to the participant's
drawn trials, one page per step (`trial:<position>:<step>`), each answered with one click.

Identity is an unguessable token in an HttpOnly cookie, created at consent; an unknown or
tampered token gets 403. Every page form carries the page's sequence number: the server
accepts only the participant's current number, a repeated identical submission (double click,
reload after posting) is answered by a redirect to the current page and stores nothing, a
different answer to an already submitted page gets 409. Time on a page is measured by the
server (from the moment the previous page was accepted to this page's submission) and stored
as is, however short: the analysis excludes too-fast participants by its rules (the paper's
"answers in under 30 seconds"), so the raw seconds must survive. Nothing a participant sends is
logged.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from flask import Flask, abort, make_response, redirect, render_template, request, send_file
from werkzeug.exceptions import HTTPException

from two4two.locks import exclusive
from two4two.study.bundle import ATTRIBUTES, Bundle, canonical_json
from two4two.study.paradigms import Trial
from two4two.study.storage import Participant, Storage

COOKIE = "two4two_participant"
COOKIE_MAX_AGE = 60 * 60 * 24 * 30
MAX_REQUEST_BYTES = 256 * 1024  # > the longest allowed justification (10 000 characters) URL-encoded
QUESTION_PREFIX = "question:"
TRIAL_PREFIX = "trial:"
FINISHED = ("complete", "excluded")


class BadSubmission(Exception):
    """A submitted page fails server-side validation: shown again with the message, status 400."""


def steps_of(bundle: Bundle, participant: Participant) -> list[str]:
    """The pages this participant submits, in order (then "complete")."""
    condition = bundle.condition(participant.condition)
    steps = ["introduction", "tutorial"] + (["comprehension"] if condition.comprehension else [])
    if bundle.is_trial_paradigm:
        trials = [bundle.trial(t) for t in participant.plan]
        return steps + [f"{TRIAL_PREFIX}{i}:{j}" for i, t in enumerate(trials) for j in range(len(t.steps))] + ["complete"]
    return steps + ["explanation"] + [QUESTION_PREFIX + a for a in ATTRIBUTES] + ["complete"]


def trial_step(bundle: Bundle, participant: Participant, step: str) -> tuple[int, Trial, int]:
    """(position in the plan, trial, step index) of a `trial:<position>:<step>` page."""
    position, index = (int(x) for x in step[len(TRIAL_PREFIX):].split(":"))
    return position, bundle.trial(participant.plan[position]), index


@dataclass
class Outcome:
    payload: dict[str, Any]
    next_step: str
    status: str = "active"
    comprehension_failures: int | None = None
    answer: tuple[str, str, str] | None = None
    trial_answer: tuple[str, str, int, str] | None = None


def _form_fields(form, allowed: set[str]) -> dict[str, str]:
    unknown = sorted(set(form) - allowed - {"seq"})
    if unknown:
        raise BadSubmission(f"unknown form field(s) {', '.join(map(repr, unknown[:5]))}; this page sends {', '.join(sorted(allowed)) or 'none'}")
    out = {}
    for key in allowed:
        values = form.getlist(key)
        if len(values) > 1:
            raise BadSubmission(f"form field {key!r} sent {len(values)} times; expected once")
        if values:
            out[key] = values[0]
    return out


def evaluate(bundle: Bundle, participant: Participant, step: str, form) -> Outcome:
    """Validate the form of page `step` and decide what it leads to (pure: stores nothing)."""
    condition = bundle.condition(participant.condition)
    steps = steps_of(bundle, participant)
    following = steps[steps.index(step) + 1]
    status = "completed" if following == "complete" else "active"
    if step in ("introduction", "tutorial", "explanation"):
        _form_fields(form, set())
        return Outcome({}, following)
    if step == "comprehension":
        fields = _form_fields(form, {f"q_{q.id}" for q in condition.comprehension})
        answers = {}
        for q in condition.comprehension:
            value = fields.get(f"q_{q.id}")
            if value is None:
                raise BadSubmission(f"please answer every question ({q.text!r} has no answer)")
            if value not in q.choices:
                raise BadSubmission(f"answer {value[:80]!r} to {q.id!r} is not allowed; expected one of {', '.join(map(repr, q.choices))}")
            answers[q.id] = value
        if all(answers[q.id] == q.answer for q in condition.comprehension):
            return Outcome({"answers": answers, "passed": True}, following)
        failures = participant.comprehension_failures + 1
        if failures >= 2:
            return Outcome({"answers": answers, "passed": False}, "excluded", "excluded", failures)
        return Outcome({"answers": answers, "passed": False}, "tutorial", comprehension_failures=failures)
    if step.startswith(QUESTION_PREFIX):
        question = bundle.question(step[len(QUESTION_PREFIX):])
        fields = _form_fields(form, {"attribute", "answer", "justification"})
        attribute = fields.get("attribute", "")
        if attribute not in ATTRIBUTES:
            raise BadSubmission(f"attribute {attribute[:80]!r} is not allowed; expected one of {', '.join(ATTRIBUTES)}")
        if attribute != question.attribute:
            raise BadSubmission(f"attribute {attribute!r} is not allowed on this page; it asks about {question.attribute!r}")
        answer = fields.get("answer")
        if answer not in question.choices:
            shown = "no answer" if answer is None else repr(answer[:80])
            raise BadSubmission(f"answer: {shown} is not allowed; choose one of {', '.join(question.choices)}")
        justification = fields.get("justification", "").replace("\r\n", "\n").strip()
        rule, length = question.justification, len(justification)
        low = max(rule.min_length, 1) if rule.required else 0
        if length > rule.max_length:
            raise BadSubmission(f"justification has {length} characters; at most {rule.max_length} are allowed")
        if length < low:
            raise BadSubmission(f"justification has {length} characters; at least {low} are required")
        payload = {"attribute": attribute, "answer": answer, "justification": justification}
        return Outcome(payload, following, status, answer=(attribute, answer, justification))
    if step.startswith(TRIAL_PREFIX):
        position, trial, index = trial_step(bundle, participant, step)
        shown = trial.steps[index]
        fields = _form_fields(form, {"trial", "step", "answer"})
        if fields.get("trial") != trial.id or fields.get("step") != shown.id:
            sent = f"{fields.get('trial', '')[:80]!r}/{fields.get('step', '')[:80]!r}"
            raise BadSubmission(f"trial/step {sent} is not allowed on this page; it shows {trial.id!r}/{shown.id!r}")
        answer = fields.get("answer")
        if answer not in shown.choices:
            sent = "no answer" if answer is None else repr(answer[:80])
            raise BadSubmission(f"answer: {sent} is not allowed; choose one of {', '.join(shown.choices)}")
        payload = {"trial": trial.id, "step": shown.id, "answer": answer}
        return Outcome(payload, following, status, trial_answer=(trial.id, shown.id, position, answer))
    raise BadSubmission("this page has nothing to submit")


def create_app(
    bundle: Bundle,
    db: str | Path,
    clock: Callable[[], float] = time.time,
    rng: random.Random | None = None,
) -> Flask:
    """The study app for `bundle`, storing into the SQLite file `db` (created if missing).

    `clock` (seconds) and `rng` (condition ties) are injectable so tests can control time and assignment.
    """
    storage = Storage(db, bundle)
    rng = rng or random.SystemRandom()
    app = Flask(__name__, static_folder="static", template_folder="templates")
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    images = bundle.image_paths

    def token() -> str | None:
        return request.cookies.get(COOKIE)

    def page_number(participant: Participant) -> tuple[int, int]:
        steps = steps_of(bundle, participant)
        index = steps.index(participant.step) if participant.step in steps else len(steps) - 1
        return index + 1, len(steps) - 1

    def page_response(template: str, status: int = 200, **context):
        response = make_response(render_template(template, bundle=bundle, **context), status)
        response.headers["Cache-Control"] = "no-store"
        return response

    def render_step(participant: Participant, error: str | None = None, form=None, status: int = 200):
        condition = bundle.condition(participant.condition)
        step = participant.step
        context = dict(
            condition=condition, participant=participant, error=error, form=form or {},
            page=None if step in FINISHED else page_number(participant), seq=participant.seq,
        )
        if step.startswith(QUESTION_PREFIX):
            template = "question.html"
            context["question"] = bundle.question(step[len(QUESTION_PREFIX):])
        elif step.startswith(TRIAL_PREFIX):
            template = "trial.html"
            position, trial, index = trial_step(bundle, participant, step)
            context.update(trial=trial, shown=trial.steps[index], position=position + 1, trials=len(participant.plan),
                           step_index=index + 1)
        else:
            template = f"{step}.html"
        return page_response(template, status, **context)

    def error_page(status: int, title: str, message: str, resume: bool = False):
        return page_response("error.html", status, title=title, message=message, resume=resume)

    @app.after_request
    def security_headers(response):
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        messages = {
            404: "There is no such page.",
            405: "This page cannot be used that way.",
            413: f"The form was larger than {MAX_REQUEST_BYTES // 1024} KiB and was not stored.",
        }
        return error_page(exc.code or 500, exc.name, messages.get(exc.code, exc.description or ""))

    @app.get("/")
    def consent():
        with storage.read() as conn:
            if storage.find(conn, token()):
                return redirect("/study", 303)
        return page_response("consent.html")

    @app.post("/consent")
    def give_consent():
        choice = request.form.get("consent")
        if set(request.form) - {"consent"} or choice not in ("yes", "no"):
            return error_page(400, "Bad request", "consent must be 'yes' or 'no'.")
        if choice == "no":
            return make_response(render_template("declined.html", bundle=bundle))
        with storage.write() as conn:
            if storage.find(conn, token()):  # consent sent again from a browser that already has a place
                return redirect("/study", 303)
            new_token, _ = storage.create_participant(conn, "introduction", clock(), rng)
        response = redirect("/study", 303)
        response.set_cookie(COOKIE, new_token, max_age=COOKIE_MAX_AGE, httponly=True, samesite="Lax", secure=request.is_secure)
        return response

    def unknown_participant():
        return error_page(
            403, "No study session",
            "This browser has no place in the study (or an unknown one). Please start from the first page.",
        )

    @app.get("/study")
    def show():
        with storage.read() as conn:
            participant = storage.find(conn, token())
        if participant is None:
            return unknown_participant()
        return render_step(participant)

    @app.post("/study")
    def submit():
        raw_seq = request.form.get("seq", "")
        with storage.write() as conn:
            participant = storage.find(conn, token())
            if participant is None:
                return unknown_participant()
            if not re.fullmatch(r"[0-9]{1,9}", raw_seq):
                return error_page(400, "Bad request", f"page number {raw_seq[:20]!r} is not allowed; expected the number the page sent.", resume=True)
            seq = int(raw_seq)
            if seq < participant.seq:
                stored = storage.page(conn, participant, seq)
                try:
                    sent = evaluate(bundle, participant, stored.step, request.form).payload if stored else None
                    same = stored is not None and canonical_json(sent) == stored.payload
                except BadSubmission:
                    same = False
                if same:  # the same page sent twice: nothing to do, show where they are
                    return redirect("/study", 303)
                return error_page(409, "Already submitted", "This page was already submitted; its answers cannot be changed.", resume=True)
            if participant.step in FINISHED:
                return error_page(409, "Study finished", "The study is over for you; nothing more can be sent.", resume=True)
            if seq > participant.seq:
                return error_page(409, "Out of sequence", "This is not the page you are on.", resume=True)
            try:
                outcome = evaluate(bundle, participant, participant.step, request.form)
            except BadSubmission as exc:
                form = {k: v[:20_000] for k, v in request.form.items()}
                return render_step(participant, error=str(exc), form=form, status=400)
            storage.submit(
                conn, participant, canonical_json(outcome.payload), clock(), outcome.next_step, outcome.status,
                outcome.comprehension_failures, outcome.answer, outcome.trial_answer,
            )
        return redirect("/study", 303)

    @app.get("/bundle/<path:name>")
    def bundle_file(name: str):
        if name not in images or bundle.root is None:  # only files the manifest lists; no path ever built from input
            abort(404)
        return send_file(bundle.root / name, mimetype="image/png", max_age=3600)

    return app


def serve(bundle: Bundle, db: str | Path, host: str = "127.0.0.1", port: int = 8000, threads: int = 8,
          ready: Callable[[], None] | None = None) -> None:
    """Run the app with waitress until interrupted (Ctrl+C, SIGINT), holding the database's lock
    (`DB.lock`): a second server on the same database is refused. `ready` runs once the lock is held.

    A process inherits an ignored or blocked SIGINT from whatever started it (a test runner,
    a job control wrapper); then Ctrl+C would never stop the server, so both are undone first.
    """
    import signal

    from waitress import serve as waitress_serve

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    with exclusive(db, "study database", lock_path=f"{db}.lock"):  # one server per database
        app = create_app(bundle, db)
        if ready is not None:
            ready()
        waitress_serve(app, host=host, port=port, threads=threads, ident="two4two-study")
