"""Responses of a running study in SQLite: one write transaction per submitted page.

Each participant is found only through the hash of their secret token (the cookie), so a request
can reach no other participant's rows. Every write runs in `BEGIN IMMEDIATE`, which serialises
the read-check-write of a page submission: a page (participant, seq) and an answer
(participant, attribute) are primary keys and can be stored once only. The database remembers
the fingerprint of the bundle it was created for and refuses another bundle.

Trial paradigms add two tables: `plan_trials` (the trials drawn for a participant at consent,
in the order shown) and `trial_answers` (participant, trial, step) — also stored once only.
A database written before they existed gains them, empty, when opened.
"""

from __future__ import annotations

import hashlib
import random
import re
import secrets
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from two4two.errors import StorageError
from two4two.study.responses import Response
from two4two.study.bundle import ATTRIBUTES, Bundle
from two4two.study.paradigms import DrawError, draw_plan, response_row

SCHEMA_VERSION = "1"
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
STATUSES = ("active", "completed", "excluded")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS participants (
    id INTEGER PRIMARY KEY,
    public_id TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    condition TEXT NOT NULL,
    step TEXT NOT NULL,
    seq INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'completed', 'excluded')),
    comprehension_failures INTEGER NOT NULL DEFAULT 0,
    completion_code TEXT,
    started_at REAL NOT NULL,
    page_started_at REAL NOT NULL,
    finished_at REAL
);
CREATE TABLE IF NOT EXISTS pages (
    participant INTEGER NOT NULL REFERENCES participants(id),
    seq INTEGER NOT NULL,
    step TEXT NOT NULL,
    payload TEXT NOT NULL,
    shown_at REAL NOT NULL,
    submitted_at REAL NOT NULL,
    seconds REAL NOT NULL,
    PRIMARY KEY (participant, seq)
);
CREATE TABLE IF NOT EXISTS answers (
    participant INTEGER NOT NULL REFERENCES participants(id),
    attribute TEXT NOT NULL,
    answer TEXT NOT NULL,
    justification TEXT NOT NULL,
    seconds REAL NOT NULL,
    PRIMARY KEY (participant, attribute)
);
CREATE TABLE IF NOT EXISTS plan_trials (
    participant INTEGER NOT NULL REFERENCES participants(id),
    position INTEGER NOT NULL,
    trial TEXT NOT NULL,
    PRIMARY KEY (participant, position)
);
CREATE TABLE IF NOT EXISTS trial_answers (
    participant INTEGER NOT NULL REFERENCES participants(id),
    trial TEXT NOT NULL,
    step TEXT NOT NULL,
    position INTEGER NOT NULL,
    answer TEXT NOT NULL,
    seconds REAL NOT NULL,
    PRIMARY KEY (participant, trial, step)
);
"""


@dataclass(frozen=True)
class Participant:
    id: int
    public_id: str
    condition: str
    step: str
    seq: int
    status: str
    comprehension_failures: int
    completion_code: str | None
    started_at: float
    page_started_at: float
    finished_at: float | None
    plan: tuple[str, ...] = ()  # trial ids in the order shown (trial paradigms)


@dataclass(frozen=True)
class StoredPage:
    seq: int
    step: str
    payload: str
    seconds: float


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Storage:
    """The responses database of one bundle."""

    def __init__(self, path: str | Path, bundle: Bundle):
        self.path = Path(path)
        self.bundle = bundle
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        try:
            with self.write() as conn:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                if not meta:
                    conn.executemany(
                        "INSERT INTO meta (key, value) VALUES (?, ?)",
                        [("schema", SCHEMA_VERSION), ("bundle_fingerprint", bundle.fingerprint), ("bundle_title", bundle.title)],
                    )
                elif meta.get("schema") != SCHEMA_VERSION:
                    raise StorageError(f"{self.path}: responses database of schema {meta.get('schema')!r}; this version reads {SCHEMA_VERSION!r}")
                elif meta.get("bundle_fingerprint") != bundle.fingerprint:
                    raise StorageError(
                        f"{self.path}: holds responses to another bundle ({meta.get('bundle_title')!r}, manifest sha256 "
                        f"{meta.get('bundle_fingerprint', '')[:12]}…) than {bundle.root or 'this bundle'} "
                        f"(sha256 {bundle.fingerprint[:12]}…); use another --db for a changed bundle"
                    )
        except sqlite3.DatabaseError as exc:
            self.close()
            raise StorageError(f"{self.path}: not a responses database ({exc})") from None
        except BaseException:
            self.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        """This thread's connection (kept open: opening one, and the WAL checkpoint when the last one
        closes, would otherwise cost more than the transaction)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _discard(self, conn: sqlite3.Connection) -> None:
        self._local.conn = None
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
        conn.close()

    def close(self) -> None:
        """Close every thread's connection (the app's threads must be done)."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One serialised write transaction: committed when the block ends, rolled back on any exception."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._discard(conn)
            raise StorageError(f"{self.path}: cannot write ({exc})") from None
        try:
            yield conn
        except sqlite3.OperationalError as exc:  # a full disk, a vanished file: nothing of the transaction stays
            self._rollback(conn)
            raise StorageError(f"{self.path}: cannot write ({exc})") from None
        except BaseException:
            self._rollback(conn)
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback(conn)
            raise StorageError(f"{self.path}: cannot write ({exc})") from None

    def _rollback(self, conn: sqlite3.Connection) -> None:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            self._discard(conn)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for reading."""
        conn = self._connect()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            self._rollback(conn)

    # ------------------------------------------------------------ participants

    def create_participant(self, conn: sqlite3.Connection, first_step: str, now: float, rng: random.Random) -> tuple[str, Participant]:
        """A new participant in the condition with the fewest (not excluded) participants, ties at random."""
        names = self.bundle.condition_names
        counts = dict.fromkeys(names, 0)
        for row in conn.execute("SELECT condition, COUNT(*) FROM participants WHERE status != 'excluded' GROUP BY condition"):
            if row[0] in counts:
                counts[row[0]] = row[1]
        fewest = min(counts.values())
        condition = rng.choice([n for n in names if counts[n] == fewest])
        token = secrets.token_urlsafe(32)
        while True:
            public_id = "P" + secrets.token_hex(5)
            if conn.execute("SELECT 1 FROM participants WHERE public_id = ?", (public_id,)).fetchone() is None:
                break
        cursor = conn.execute(
            "INSERT INTO participants (public_id, token_hash, condition, step, started_at, page_started_at) VALUES (?, ?, ?, ?, ?, ?)",
            (public_id, hash_token(token), condition, first_step, now, now),
        )
        if self.bundle.is_trial_paradigm:
            shown = dict(conn.execute(
                "SELECT t.trial, COUNT(*) FROM plan_trials t JOIN participants p ON p.id = t.participant"
                " WHERE p.status != 'excluded' GROUP BY t.trial").fetchall())
            try:
                plan = draw_plan(self.bundle.trials, self.bundle.order, condition, shown, rng)
            except DrawError as exc:  # the bundle's check draws once per condition; a later draw may still fail
                raise StorageError(f"{self.path}: {exc}") from None
            conn.executemany("INSERT INTO plan_trials (participant, position, trial) VALUES (?, ?, ?)",
                             [(cursor.lastrowid, i, t) for i, t in enumerate(plan)])
        participant = self.find(conn, token)
        assert participant is not None
        return token, participant

    def find(self, conn: sqlite3.Connection, token: str | None) -> Participant | None:
        """The participant holding this token, or None for a missing, malformed or unknown one."""
        if not token or not TOKEN_PATTERN.fullmatch(token):
            return None
        row = conn.execute("SELECT * FROM participants WHERE token_hash = ?", (hash_token(token),)).fetchone()
        if row is None:
            return None
        plan = tuple(r[0] for r in conn.execute("SELECT trial FROM plan_trials WHERE participant = ? ORDER BY position", (row["id"],)))
        return Participant(**{k: row[k] for k in Participant.__dataclass_fields__ if k != "plan"}, plan=plan)

    def page(self, conn: sqlite3.Connection, participant: Participant, seq: int) -> StoredPage | None:
        row = conn.execute(
            "SELECT seq, step, payload, seconds FROM pages WHERE participant = ? AND seq = ?", (participant.id, seq)
        ).fetchone()
        return StoredPage(row["seq"], row["step"], row["payload"], row["seconds"]) if row else None

    def submit(
        self,
        conn: sqlite3.Connection,
        participant: Participant,
        payload: str,
        now: float,
        next_step: str,
        status: str = "active",
        comprehension_failures: int | None = None,
        answer: tuple[str, str, str] | None = None,
        trial_answer: tuple[str, str, int, str] | None = None,
    ) -> float:
        """Store the participant's current page, optionally its answer (attribute, answer, justification)
        or trial answer (trial, step, position in the plan, answer), and move them to `next_step`;
        returns the seconds spent on the page."""
        assert status in STATUSES
        seconds = max(0.0, now - participant.page_started_at)
        conn.execute(
            "INSERT INTO pages (participant, seq, step, payload, shown_at, submitted_at, seconds) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (participant.id, participant.seq, participant.step, payload, participant.page_started_at, now, seconds),
        )
        if answer is not None:
            conn.execute(
                "INSERT INTO answers (participant, attribute, answer, justification, seconds) VALUES (?, ?, ?, ?, ?)",
                (participant.id, *answer, seconds),
            )
        if trial_answer is not None:
            conn.execute(
                "INSERT INTO trial_answers (participant, trial, step, position, answer, seconds) VALUES (?, ?, ?, ?, ?, ?)",
                (participant.id, *trial_answer, seconds),
            )
        finished = status != "active"
        updated = conn.execute(
            "UPDATE participants SET step = ?, seq = seq + 1, status = ?, comprehension_failures = ?, page_started_at = ?,"
            " finished_at = ?, completion_code = ? WHERE id = ? AND seq = ?",
            (
                next_step,
                status,
                participant.comprehension_failures if comprehension_failures is None else comprehension_failures,
                now,
                now if finished else None,
                secrets.token_hex(4).upper() if status == "completed" else None,
                participant.id,
                participant.seq,
            ),
        ).rowcount
        if updated != 1:  # cannot happen inside BEGIN IMMEDIATE; never store a page twice silently
            raise RuntimeError(f"participant {participant.public_id} moved on during the transaction")
        return seconds

    # ------------------------------------------------------------ export

    def responses(self) -> list[Response]:
        """The answers of every participant who completed the study, in the format `study analyze` reads."""
        key = self.bundle.answer_key
        order = {a: i for i, a in enumerate(ATTRIBUTES)}
        with self.read() as conn:
            rows = conn.execute(
                "SELECT p.public_id AS participant_id, p.condition, p.comprehension_failures, a.attribute, a.answer,"
                " a.justification, a.seconds FROM participants p JOIN answers a ON a.participant = p.id"
                " WHERE p.status = 'completed' ORDER BY p.started_at, p.id"
            ).fetchall()
        out = [Response(**{**dict(r), "seconds": round(r["seconds"], 3)}, expected=key[r["attribute"]]) for r in rows]
        rank = {pid: i for i, pid in enumerate(dict.fromkeys(r.participant_id for r in out))}
        return sorted(out, key=lambda r: (rank[r.participant_id], order[r.attribute]))

    def trial_responses(self) -> list[dict[str, Any]]:
        """Every trial answer of every participant who completed the study, one row per step, with
        the trial's and step's facts (method, level, bin, ...) as columns; in the order answered."""
        with self.read() as conn:
            rows = conn.execute(
                "SELECT p.public_id, p.condition, a.trial, a.step, a.position, a.answer, a.seconds"
                " FROM participants p JOIN trial_answers a ON a.participant = p.id WHERE p.status = 'completed'"
                " ORDER BY p.started_at, p.id, a.position"
            ).fetchall()
        out = []
        for r in rows:
            trial = self.bundle.trial(r["trial"])
            index = next(i for i, s in enumerate(trial.steps) if s.id == r["step"])
            out.append(response_row(r["public_id"], r["condition"], r["position"], trial, index, r["answer"],
                                    r["seconds"], self.bundle.too_fast_seconds))
        rank = {pid: i for i, pid in enumerate(dict.fromkeys(row["participant_id"] for row in out))}
        return sorted(out, key=lambda row: (rank[row["participant_id"]], row["position"], row["step_index"]))

    def participants_report(self) -> list[dict[str, Any]]:
        """Every participant, finished or not: status, condition, pages, time, completion code."""
        with self.read() as conn:
            rows = conn.execute(
                f"SELECT {', '.join(f'{sql} AS {name}' for name, sql in REPORT_SQL.items())} FROM participants p"
                " LEFT JOIN pages g ON g.participant = p.id GROUP BY p.id ORDER BY p.started_at, p.id"
            ).fetchall()
        return [{**dict(r), "seconds_total": round(r["seconds_total"], 3)} for r in rows]


# The participants report: each column and the SQL that computes it (p: the participant, g: their pages).
REPORT_SQL = {
    "participant_id": "p.public_id", "condition": "p.condition", "status": "p.status", "current_page": "p.step",
    "pages_submitted": "COUNT(g.seq)", "comprehension_failures": "p.comprehension_failures",
    "seconds_total": "COALESCE(SUM(g.seconds), 0)", "started_at": "p.started_at",
    "finished_at": "COALESCE(p.finished_at, '')", "completion_code": "COALESCE(p.completion_code, '')",
}
REPORT_COLUMNS: Sequence[str] = tuple(REPORT_SQL)
