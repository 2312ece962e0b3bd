"""The responses file: its schema, reading it strictly, writing it, and the study's design checks;
also the two writers every study module shares (CSV text, an analysis' files written at once)."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, fields as dataclass_fields
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from two4two.errors import ResponsesError
from two4two.study.questions import QUESTION_NAMES

ATTRIBUTES = QUESTION_NAMES  # what each response answers, in the study's order
ANSWERS = ("relevant", "irrelevant")


@dataclass(frozen=True)
class Response:
    """One row of the responses file: its columns are the fields before `line`, in this order."""

    participant_id: str
    condition: str
    attribute: str
    answer: str
    expected: str
    seconds: float
    comprehension_failures: int
    justification: str = ""
    line: int = 0  # line of the responses file the row starts on (0: not from a file)

    @property
    def correct(self) -> bool:
        return self.answer == self.expected


COLUMNS = tuple(f.name for f in dataclass_fields(Response) if f.name != "line")
NUMERIC_COLUMNS = ("seconds", "comprehension_failures")


# ---------------------------------------------------------------- reading responses


def read_responses(path: str | Path) -> list[Response]:
    """Read and validate a responses CSV; any problem raises ResponsesError naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise ResponsesError(f"{path}: no such responses file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ResponsesError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_responses(text, str(path))


def parse_responses(text: str, source: str = "<responses>") -> list[Response]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[Response] = []
    try:
        header = next(reader, None)
        if header is None:
            raise ResponsesError(f"{source}: empty file; expected the header {','.join(COLUMNS)}")
        header = [name.strip() for name in header]
        missing = [c for c in COLUMNS if c not in header]
        unknown = [h for h in header if h not in COLUMNS]
        doubled = sorted({h for h in header if header.count(h) > 1})
        problems = [f"missing column(s) {', '.join(missing)}"] if missing else []
        problems += [f"unknown column(s) {', '.join(map(repr, unknown))}"] if unknown else []
        problems += [f"column(s) {', '.join(doubled)} appear twice"] if doubled else []
        if problems:
            raise ResponsesError(f"{source}, line 1: {'; '.join(problems)}; the header must be {','.join(COLUMNS)}")
        index = {name: header.index(name) for name in COLUMNS}
        start = reader.line_num + 1
        for fields in reader:
            line, start = start, reader.line_num + 1
            if not any(f.strip() for f in fields):
                continue  # blank line
            if len(fields) != len(header):
                raise ResponsesError(f"{source}, line {line}: {len(fields)} fields, but the header has {len(header)}")
            rows.append(_parse_row({name: fields[i] for name, i in index.items()}, source, line))
    except csv.Error as exc:
        raise ResponsesError(f"{source}, line {reader.line_num}: not valid CSV ({exc})") from None
    if not rows:
        raise ResponsesError(f"{source}: no responses after the header")
    check_design(rows, source)
    return rows


def _parse_row(rec: dict[str, str], source: str, line: int) -> Response:
    def bad(column: str, value: str, allowed: str) -> ResponsesError:
        return ResponsesError(f"{source}, line {line}: {column} {value!r} is not allowed; expected {allowed}")

    values: dict[str, Any] = {}
    texts = {"participant_id": None, "condition": None, "attribute": ATTRIBUTES, "answer": ANSWERS, "expected": ANSWERS}
    for column, choices in texts.items():  # None: any non-empty name
        values[column] = rec[column].strip()
        if (not values[column]) if choices is None else (values[column] not in choices):
            raise bad(column, rec[column], "a non-empty name" if choices is None else f"one of {', '.join(choices)}")
    numbers = (("seconds", float, "a number of seconds ≥ 0"), ("comprehension_failures", int, "an integer ≥ 0"))
    for column, convert, allowed in numbers:
        try:
            values[column] = convert(rec[column].strip())
        except ValueError:
            raise bad(column, rec[column], allowed) from None
        if not 0 <= values[column] < math.inf:  # also refuses NaN
            raise bad(column, rec[column], allowed)
    return Response(justification=rec["justification"], line=line, **values)


def check_design(rows: Sequence[Response], source: str = "<responses>") -> None:
    """One condition and one comprehension count per participant, every attribute answered exactly once."""
    for pid, own in _by_participant(rows).items():
        first = own[0]
        for r in own[1:]:
            if r.condition != first.condition:
                raise ResponsesError(
                    f"{source}: participant {pid!r} appears in two conditions ({first.condition!r} on line "
                    f"{first.line}, {r.condition!r} on line {r.line}); each participant sees one condition"
                )
            if r.comprehension_failures != first.comprehension_failures:
                raise ResponsesError(
                    f"{source}: participant {pid!r} has comprehension_failures {first.comprehension_failures} on "
                    f"line {first.line} but {r.comprehension_failures} on line {r.line}; it is one number per participant"
                )
        seen: dict[str, int] = {}
        for r in own:
            if r.attribute in seen:
                raise ResponsesError(
                    f"{source}: participant {pid!r} answers {r.attribute} twice (lines {seen[r.attribute]} and "
                    f"{r.line}); each participant answers each attribute once"
                )
            seen[r.attribute] = r.line
        missing = [a for a in ATTRIBUTES if a not in seen]
        if missing:
            raise ResponsesError(
                f"{source}: participant {pid!r} has no answer for {', '.join(missing)}; "
                f"each participant answers all of {', '.join(ATTRIBUTES)}"
            )


def _by_participant(rows: Iterable[Response]) -> dict[str, list[Response]]:
    out: dict[str, list[Response]] = {}
    for r in rows:
        out.setdefault(r.participant_id, []).append(r)
    return out


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A header and rows as CSV text with Unix line ends (every CSV the study writes)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def write_outputs(out_dir: str | Path, files: Mapping[str, tuple[str, bytes]]) -> dict[str, Path]:
    """An analysis' files (key → file name and content) into out_dir, all or nothing; returns key → path."""
    from two4two.io import atomic_write_files

    paths = {key: Path(out_dir) / name for key, (name, _) in files.items()}
    atomic_write_files({paths[key]: data for key, (_, data) in files.items()})
    return paths


def responses_csv(responses: Iterable[Response]) -> str:
    """The responses as the CSV text read_responses reads (the study app writes the same)."""
    return csv_text(COLUMNS, ([getattr(r, c) for c in COLUMNS] for r in responses))
