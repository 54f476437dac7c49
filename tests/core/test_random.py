"""core._random.categorical: seeded categorical draws, also under XLA."""

import numpy as np
import pytest

from deel_ebm._backend import tf
from deel_ebm.core._random import _inverse_cdf, categorical

PROBS = np.array([0.2, 0.0, 0.3, 0.5, 0.0])
N = 200_000


def _check_frequencies(picks):
    assert picks.dtype == np.int64 and picks.shape == (N,)
    counts = np.bincount(picks, minlength=len(PROBS))
    assert len(counts) == len(PROBS)  # no index past the last component
    # components of zero weight are never drawn
    assert counts[1] == 0 and counts[4] == 0
    # within 5 standard errors of the probabilities
    se = np.sqrt(PROBS * (1 - PROBS) / N)
    np.testing.assert_array_less(np.abs(counts / N - PROBS), 5 * se + 1e-12)


@pytest.mark.parametrize("jit", [False, True])
def test_draws_follow_the_weights_eagerly_and_under_xla(jit):
    with np.errstate(divide="ignore"):
        log_w = tf.constant(np.log(PROBS) + 7.0)  # unnormalised, -inf entries
    seed = tf.constant([3, 4], tf.int64)
    draw = tf.function(lambda s: categorical(log_w, N, s), jit_compile=jit)
    picks = draw(seed).numpy()
    _check_frequencies(picks)
    # a pure function of the seed
    np.testing.assert_array_equal(picks, draw(seed).numpy())
    assert not np.array_equal(picks, draw(tf.constant([3, 5], tf.int64)).numpy())


def test_tiny_weights_keep_their_share_and_count_may_be_a_tensor():
    # one weight of 1 and 100 000 of 5e-8: the tail holds 5e-3 / (1 + 5e-3) of the
    # mass. In float32 each tail weight is below half an ulp of the running sum
    # and the whole tail would vanish; float64 keeps it.
    log_w = tf.constant(np.r_[0.0, np.full(100_000, np.log(5e-8))], tf.float32)
    picks = categorical(log_w, tf.constant(400_000), [0, 1]).numpy()
    tail = 5e-3 / (1 + 5e-3)
    se = np.sqrt(tail * (1 - tail) / len(picks))
    assert abs(np.mean(picks > 0) - tail) < 5 * se


@pytest.mark.parametrize("jit", [False, True])
def test_boundary_uniforms_never_pick_a_zero_weight_or_an_index_past_the_end(jit):
    # zero weight first and last: u = 0 must not pick the first, the largest u
    # below 1 must not pick the last nor run past it
    with np.errstate(divide="ignore"):
        log_w = tf.constant(np.log([0.0, 0.25, 0.0, 0.75, 0.0]))
    u = tf.constant([0.0, 0.2, 0.3, np.nextafter(1.0, 0.0)], tf.float64)
    search = tf.function(_inverse_cdf, jit_compile=jit)
    np.testing.assert_array_equal(search(log_w, u).numpy(), [1, 1, 3, 3])


@pytest.mark.parametrize("jit", [False, True])
def test_non_finite_weights_count_as_zero_and_none_finite_is_uniform(jit):
    draw = tf.function(lambda w: categorical(w, 20_000, [5, 6]), jit_compile=jit)
    picks = draw(tf.constant([np.nan, 0.0, np.inf, -np.inf, 0.0])).numpy()
    assert set(np.unique(picks)) == {1, 4}
    assert abs(np.mean(picks == 1) - 0.5) < 5 * np.sqrt(0.25 / len(picks))
    picks = draw(tf.constant([-np.inf, np.nan, -np.inf, -np.inf])).numpy()
    counts = np.bincount(picks, minlength=4)
    assert len(counts) == 4
    se = np.sqrt(0.25 * 0.75 / len(picks))
    np.testing.assert_array_less(np.abs(counts / len(picks) - 0.25), 5 * se)


def test_single_category_zero_draws_and_bad_shapes():
    assert categorical(tf.constant([3.0]), 7, [0, 0]).numpy().tolist() == [0] * 7
    assert categorical(tf.constant([0.0, 1.0]), 0, [0, 0]).shape == (0,)
    with pytest.raises(ValueError, match="must be 1-D"):
        categorical(tf.zeros([2, 3]), 4, [0, 0])
    with pytest.raises(ValueError, match="at least one entry"):
        categorical(tf.zeros([0]), 4, [0, 0])
