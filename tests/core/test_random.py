"""core._random.categorical: seeded categorical draws, also under XLA."""

import numpy as np
import pytest

from deel_ebm._backend import tf
from deel_ebm.core._random import categorical

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
    # float32 weights 60 nats below the largest: float64 keeps their share
    log_w = tf.constant([0.0, -2.0, -60.0], tf.float32)
    picks = categorical(log_w, tf.constant(50_000), [0, 1]).numpy()
    share = np.mean(picks == 1)
    assert share == pytest.approx(np.exp(-2) / (1 + np.exp(-2)), abs=0.01)
    assert picks.max() <= 1
