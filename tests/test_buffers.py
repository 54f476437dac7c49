import numpy as np
import pytest

from deel_ebm import ReplayBuffer
from deel_ebm._backend import tf


def built(**kw):
    buffer = ReplayBuffer(**kw)
    buffer.build((None, 3))
    return buffer


def test_initial_fill_is_the_prior():
    buffer = built(capacity=5000, domain=(-2.0, 3.0))
    x = buffer.storage.numpy()
    assert x.shape == (5000, 3)
    assert x.min() >= -2.0 and x.max() <= 3.0
    np.testing.assert_allclose(x.mean(), 0.5, atol=0.05)  # uniform mean, se ~0.012
    g = built(capacity=5000, prior="gaussian", domain=(-2.0, 2.0), prior_std=0.5)
    np.testing.assert_allclose(g.storage.numpy().std(), 0.5, atol=0.02)


def test_draw_gives_distinct_slots_and_write_stores_states():
    buffer = built(capacity=100, reinit_prob=0.0)
    starts, slots = buffer.draw(64, seed=[0, 1])
    assert len(set(slots.numpy().tolist())) == 64
    np.testing.assert_array_equal(starts, tf.gather(buffer.storage, slots))
    new = tf.fill([64, 3], 7.0)
    buffer.write(slots, new)
    np.testing.assert_array_equal(tf.gather(buffer.storage, slots), new)
    untouched = np.setdiff1d(np.arange(100), slots.numpy())
    assert not np.any(buffer.storage.numpy()[untouched] == 7.0)


def test_reinit_share_matches_probability():
    buffer = built(capacity=5000, reinit_prob=0.3)
    buffer.write(tf.range(5000), tf.fill([5000, 3], 100.0))  # far from the prior
    starts, _ = buffer.draw(4000, seed=[2, 3])
    share = float(tf.reduce_mean(tf.cast(starts[:, 0] < 100.0, tf.float32)))
    assert abs(share - 0.3) < 0.03  # binomial sd 0.007


def test_draw_inside_tf_function():
    buffer = built(capacity=50, reinit_prob=0.1)

    @tf.function
    def step(seed):
        starts, slots = buffer.draw(10, seed)
        buffer.write(slots, starts + 1.0)
        return slots

    slots = step(tf.constant([1, 2], tf.int64))
    assert slots.shape == (10,)


def test_same_seed_same_draw():
    buffer = built(capacity=200)
    a, _ = buffer.draw(20, seed=[5, 5])
    b, _ = buffer.draw(20, seed=[5, 5])
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"capacity": 0},
        {"reinit_prob": 1.5},
        {"reinit_prob": -0.1},
        {"prior": "cauchy"},
        {"domain": (1.0, 1.0)},
        {"domain": "wide"},
        {"prior_std": -1.0},
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        ReplayBuffer(**kwargs)


def test_capacity_must_be_int():
    with pytest.raises(TypeError):
        ReplayBuffer(capacity=10.5)


def test_batch_larger_than_capacity_raises():
    with pytest.raises(ValueError, match="capacity"):
        built(capacity=8).draw(16, seed=[0, 0])


def test_config_round_trip():
    buffer = ReplayBuffer(
        capacity=123,
        reinit_prob=0.2,
        prior="gaussian",
        domain=(-1, 2),
        prior_std=0.3,
        seed=4,
    )
    clone = ReplayBuffer.from_config(buffer.get_config())
    assert clone.get_config() == buffer.get_config()
