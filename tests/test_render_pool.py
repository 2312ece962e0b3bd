"""The worker pool: streaming, crash and hang recovery, bounded retries, early validation."""

import multiprocessing as mp
import os
import signal

import numpy as np
import pytest

from two4two.errors import ParameterError
from two4two.render import RenderError, RenderPool, render
from two4two.sampling import Sampler


@pytest.fixture(scope="module")
def params():
    return Sampler(resolution=(32, 32)).sample(12, 0).to_list()


@pytest.mark.slow
@pytest.mark.render
def test_every_index_comes_back_exactly_once(params, fast_render_settings):
    results = list(render(params, workers=2, settings=fast_render_settings, progress=False))
    assert sorted(r.index for r in results) == list(range(len(params)))
    for r in results:
        assert r.params is params[r.index]
        assert r.image.shape == (32, 32, 3) and r.mask.shape == (32, 32)
        assert r.mask.max() > 0  # the animal is in the picture


@pytest.mark.slow
@pytest.mark.render
def test_a_killed_worker_is_replaced_and_nothing_is_lost(params, fast_render_settings):
    seen = []
    with RenderPool(2, fast_render_settings) as pool:
        for result in pool.imap(params):
            seen.append(result.index)
            if len(seen) == 2:
                os.kill(pool.worker_pids()[0], signal.SIGKILL)
        assert pool.restarts >= 1
    assert sorted(seen) == list(range(len(params)))


@pytest.mark.slow
@pytest.mark.render
def test_a_hung_worker_is_replaced_after_the_timeout(params, fast_render_settings):
    seen = []
    with RenderPool(1, fast_render_settings, timeout=5) as pool:
        for result in pool.imap(params[:6]):
            seen.append(result.index)
            if len(seen) == 1:  # the only worker, with the next samples already queued
                os.kill(pool.worker_pids()[0], signal.SIGSTOP)
        assert pool.restarts >= 1
    assert sorted(seen) == list(range(6))


@pytest.mark.slow
@pytest.mark.render
def test_a_sample_that_always_crashes_its_worker_fails_with_its_name(params, monkeypatch, fast_render_settings):
    import faulty_worker

    monkeypatch.setenv("TWO4TWO_TEST_CRASH_ID", params[2].id)
    seen = []
    with pytest.raises(RenderError, match=rf"sample 2 \(id {params[2].id}\) failed 3 times; last: worker \d+ died \(exit code 3\)"):
        with RenderPool(1, fast_render_settings, max_retries=2, worker_target=faulty_worker.serve) as pool:
            for result in pool.imap(params[:4]):
                seen.append(result.index)
    assert seen == [0, 1] and pool.restarts == 2  # no replacement after the final failure


@pytest.mark.slow
@pytest.mark.render
def test_a_python_error_in_the_worker_is_retried_without_duplicates(params, monkeypatch, fast_render_settings):
    import faulty_worker

    monkeypatch.setenv("TWO4TWO_TEST_RAISE_ONCE_ID", params[1].id)
    with RenderPool(1, fast_render_settings, worker_target=faulty_worker.serve) as pool:
        seen = [r.index for r in pool.imap(params[:5])]
        assert pool.restarts == 0  # the worker survived its error
    assert sorted(seen) == list(range(5))

    monkeypatch.setenv("TWO4TWO_TEST_RAISE_ID", params[3].id)
    seen = []
    with pytest.raises(RenderError, match=rf"sample 3 \(id {params[3].id}\) failed 3 times; last: ValueError"):
        with RenderPool(1, fast_render_settings, worker_target=faulty_worker.serve) as pool:
            for result in pool.imap(params[:5]):
                seen.append(result.index)
    assert len(seen) == len(set(seen)) and 3 not in seen


@pytest.mark.slow
@pytest.mark.render
def test_a_sample_that_always_hangs_is_bounded_by_timeout_and_retries(params, monkeypatch, fast_render_settings):
    import faulty_worker

    monkeypatch.setenv("TWO4TWO_TEST_HANG_ID", params[1].id)
    seen = []
    with pytest.raises(RenderError, match=rf"sample 1 \(id {params[1].id}\) failed 2 times; last: .*hung for more than 2 s"):
        with RenderPool(1, fast_render_settings, timeout=2, max_retries=1, worker_target=faulty_worker.serve) as pool:
            for result in pool.imap(params[:3]):
                seen.append(result.index)
    # The hung worker was replaced once and the replacement hung too; the lone worker never got
    # past sample 1, and no replacement is started after the final failure.
    assert seen == [0] and pool.restarts == 1


def test_invalid_parameters_are_rejected_before_any_worker_starts(params, fast_render_settings):
    bad = params[3].replace()
    bad.__dict__["obj_color"] = 7.0  # bypass construction-time validation
    before = len(mp.active_children())
    with pytest.raises(ParameterError, match=rf"sample 3 \(id {bad.id}\): obj_color: 7.0 is outside"):
        list(render([*params[:3], bad], workers=1, settings=fast_render_settings, progress=False))
    assert len(mp.active_children()) == before


@pytest.mark.slow
@pytest.mark.render
def test_pool_results_match_an_in_process_render(params, fast_render_settings):
    from blender_scripts.scene import AnimalScene
    from two4two.render import worker_payload

    result = next(iter(render(params[:1], workers=1, settings=fast_render_settings, progress=False)))
    scene = AnimalScene(resolution=(32, 32), **fast_render_settings.to_dict())
    image, mask = scene.render(worker_payload(params[0]))
    scene.close()
    np.testing.assert_array_equal(result.image, image)
    np.testing.assert_array_equal(result.mask, mask)
