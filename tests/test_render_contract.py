"""The render contract without Blender: the per-sample payload is read strictly, retries are counted once."""

import pytest

from blender_scripts.payload import PAYLOAD_KEYS, check_payload, worker_payload
from two4two.parameters import SceneParameters
from two4two.render.contract import Attempts, RenderError


def test_a_payload_holds_exactly_the_scene_parameters_and_the_resolved_colours():
    payload = worker_payload(SceneParameters("a", obj_color=0.9, bg_color=0.1))
    check_payload(payload)
    assert set(payload) == set(PAYLOAD_KEYS)
    assert payload["obj_color_rgb"] != payload["bg_color_rgb"]


def test_a_misspelled_or_missing_key_is_named():
    payload = worker_payload(SceneParameters("a"))
    payload["arm_positon"] = payload.pop("arm_position")
    with pytest.raises(ValueError, match="unknown key\\(s\\) arm_positon; missing arm_position"):
        check_payload(payload)
    del payload["arm_positon"], payload["stand_in_rgb"]
    with pytest.raises(ValueError, match="missing arm_position, stand_in_rgb"):
        check_payload(payload)


def test_attempts_end_a_run_after_max_retries_and_after_repeated_start_up_failures():
    params = [SceneParameters(f"s{i}") for i in range(3)]
    attempts = Attempts(params, None, max_retries=1)
    assert list(attempts.queue) == [0, 1, 2] and attempts.remaining == 3
    attempts.failed(1, "crashed")
    attempts.retry_first([1, 2])
    assert list(attempts.queue)[:2] == [1, 2]
    with pytest.raises(RenderError, match="sample 1 \\(id s1\\) failed 2 times; last: hung"):
        attempts.failed(1, "hung")
    for _ in range(3):
        attempts.startup_failed(lambda: "workers do not start")
    attempts.started()  # a worker came up: the count starts again
    for _ in range(3):
        attempts.startup_failed(lambda: "workers do not start")
    with pytest.raises(RenderError, match="workers do not start"):
        attempts.startup_failed(lambda: "workers do not start")
    with pytest.raises(ValueError, match="each index may be rendered only once"):
        Attempts(params, [0, 0], max_retries=1)
