"""The study's five questions: one table that the answer key, the bundle, the app and the analysis read.

Each question asks how relevant some scene attributes are for the model; `attributes`
names them in `two4two.parameters.ATTRIBUTES`, `label` is how the question text says it,
`short` how a results table heads its column, and `paper_answer` what the 2022 study's
model had (it relied on legs, colour and shape).
"""

from __future__ import annotations

from dataclasses import dataclass

from two4two.parameters import ATTRIBUTES


@dataclass(frozen=True)
class Question:
    name: str  # as responses, bundles and answer keys store it
    attributes: tuple[str, ...]
    label: str  # "How relevant is {label} for the system?"
    short: str
    paper_answer: str  # "relevant" or "irrelevant"

    def __post_init__(self):
        unknown = [a for a in self.attributes if a not in ATTRIBUTES]
        if unknown:
            raise ValueError(f"question {self.name}: {unknown[0]!r} is not a scene attribute; allowed: {', '.join(ATTRIBUTES)}")


QUESTIONS = (
    Question("legs", ("arm_position",), "the legs' position", "Legs", "relevant"),
    Question("colour", ("obj_color",), "the colour", "Colour", "relevant"),
    Question("background", ("bg_color",), "the background", "Backgr.", "irrelevant"),
    Question("shape", ("spherical",), "the shape of the blocks", "Shape", "relevant"),
    Question("rotation_bending", ("bending", "obj_rotation_roll", "obj_rotation_pitch", "obj_rotation_yaw"),
             "the rotation and bending", "Posture", "irrelevant"),
)
QUESTION_NAMES = tuple(q.name for q in QUESTIONS)
BY_NAME = {q.name: q for q in QUESTIONS}
