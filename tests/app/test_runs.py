"""RunConfig, its command-line options and build_model's factories."""

import dataclasses

import pytest

import deel_ebm
from deel_ebm.app import cli, runs
from deel_ebm.core import buffers, losses


def test_every_recipe_field_is_a_train_option_with_its_default():
    args = cli.build_parser().parse_args(["train", "--dataset", "rings", "--out", "r"])
    assert cli._config_from_args(args) == runs.RunConfig(dataset="rings")
    options = {name for name, _, _ in cli.recipe_options()}
    fields = {f.name for f in dataclasses.fields(runs.RunConfig)}
    assert options == fields - {"dataset"}
    for _, flag, kwargs in cli.recipe_options():
        flag_only = kwargs.get("action") in ("store_true", "store_false")
        shown = "(off by default)" if flag_only else "(default: "
        assert shown in kwargs["help"], flag


def test_options_reach_the_config():
    argv = ["train", "--dataset", "moons", "--out", "r", "--k", "7", "--units", "8"]
    argv += ["--unconstrained", "--ema-momentum", "none", "--domain", "-2", "2"]
    argv += ["--max-minutes", "0.5", "--lr", "0.01", "--xla"]
    config = cli._config_from_args(cli.build_parser().parse_args(argv))
    assert config.jit_compile is True
    assert config.k_coef_lip == 7.0 and config.units == (8,)
    assert config.lipschitz is False and config.ema_momentum is None
    assert config.domain == (-2.0, 2.0) and config.max_minutes == 0.5
    assert config.learning_rate == 0.01
    argv = ["train", "--dataset", "moons", "--out", "r", "--negatives", "chains"]
    argv += ["--sampler", "mala", "--target-accept", "0.6", "--learn-k"]
    argv += ["--k-max", "50", "--loss", "hkr", "--batch-size", "64"]
    config = cli._config_from_args(cli.build_parser().parse_args(argv)).validate()
    assert (config.negatives, config.sampler, config.target_accept) == (
        "chains",
        "mala",
        0.6,
    )
    assert config.learn_k and config.k_max == 50.0 and config.batch_size == 64


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"target_accept": 0.6}, "add --sampler mala"),
        ({"k_max": 50.0, "learn_k": False}, "add --learn-k"),
        ({"negatives": "both"}, "negatives must be one of"),
        ({"beta_1": 1.0}, "beta_1 must lie"),
        ({"num_negatives": 0}, "num_negatives must be a positive"),
        ({"epochs": 0}, "epochs must be a positive"),
        ({"jit_compile": "yes"}, "jit_compile must be true or false"),
    ],
)
def test_bad_recipes_are_refused(fields, match):
    with pytest.raises(ValueError, match=match):
        runs.RunConfig(**fields).validate()


def test_recipe_defaults_are_the_constructors_defaults():
    """A resolved RunConfig builds the model EnergyModel(net) builds by default."""
    for shape in ((2,), (8, 8, 1)):
        config = runs.RunConfig().resolved(shape)
        net = deel_ebm.nets.lipschitz_mlp(shape)
        model = deel_ebm.EnergyModel(net)
        assert config.k_coef_lip == pytest.approx(model.k_coef_lip, rel=1e-6)
        assert config.learn_k == model.learn_k and config.k_max == model.k_max
        assert config.num_steps == model.sampler.num_steps
        step = float(model.sampler.step_size.numpy())
        assert config.step_size == pytest.approx(step)
        assert config.negatives == ("proposal" if model.uses_proposal else "chains")
        built = runs.build_model(config, shape, (-1.0, 1.0))
        assert built.learn_k == model.learn_k and built.k_max == model.k_max
        assert [v.shape for v in built.network.trainable_variables] == [
            v.shape for v in net.trainable_variables
        ]
    low = runs.RunConfig().resolved((2,))
    assert low.negatives == "proposal" and low.learn_k and low.k_coef_lip == 20.0
    assert low.k_max == 80.0 and low.batch_size == 1024
    high = runs.RunConfig().resolved((8, 8, 1))
    assert high.negatives == "chains" and not high.learn_k
    assert high.k_coef_lip == 64.0 and high.batch_size == 256
    fixed = runs.RunConfig(k_coef_lip=10.0).resolved((2,))
    assert not fixed.learn_k and fixed.k_coef_lip == 10.0
    assert runs.RunConfig(k_coef_lip=10.0, learn_k=True).resolved((2,)).k_max == 40.0
    with pytest.raises(ValueError, match="add --learn-k"):
        runs.RunConfig(k_coef_lip=10.0, k_max=50.0).resolved((2,))
    config = runs.RunConfig()
    assert config.buffer_size == buffers.DEFAULT_CAPACITY
    assert config.reinit_prob == buffers.DEFAULT_REINIT_PROB
    assert config.l2_weight == losses.DEFAULT_L2_WEIGHT
    assert config.units is None and config.activation is None
    assert runs.RunConfig().resolved((2,)).units == deel_ebm.nets.LOW_DIM_UNITS
    assert runs.RunConfig().resolved((8, 8, 1)).units == deel_ebm.nets.DEFAULT_UNITS
    assert runs.RunConfig().resolved((8, 8, 1)).activation == "groupsort2"
    low = runs.RunConfig().resolved((2,))
    assert low.activation == "fullsort,groupsort8,groupsort8"


def test_activation_per_layer():
    config = runs.RunConfig(units=(16, 8), activation="groupsort2,fullsort")
    net = runs.default_network(config.resolved((2,)), (2,))
    sorts = [layer for layer in net.layers if "sort" in type(layer).__name__.lower()]
    assert [(type(layer).__name__, layer.n) for layer in sorts] == [
        ("GroupSort2", 2),
        ("FullSort", 8),
    ]
    with pytest.raises(ValueError, match="one per layer separated by commas"):
        runs.RunConfig(activation="fullsort,relu").validate()
    with pytest.raises(ValueError, match="one activation per hidden layer: got 2"):
        runs.default_network(
            runs.RunConfig(units=(8, 8, 8), activation="fullsort,groupsort2"), (2,)
        )


def test_build_model_takes_factories():
    config = runs.RunConfig(units=(16, 16), buffer_size=64, num_steps=3)
    mala = runs.build_model(
        config,
        (2,),
        (-4.5, 4.5),
        sampler_fn=lambda c: deel_ebm.MALASampler(num_steps=c.num_steps),
    )
    assert isinstance(mala.sampler, deel_ebm.MALASampler)
    assert mala.sampler.num_steps == 3 and mala.buffer.capacity == 64
    plain = runs.build_model(config, (2,), (-4.5, 4.5))
    assert type(plain.sampler) is deel_ebm.LangevinSampler
    with pytest.raises(TypeError):
        runs.build_model(config, (2,), (-1, 1), network_fn=lambda c, s: "not a net")


@pytest.mark.sorting_network
def test_xla_recipe_compiles_the_train_step_and_trains():
    import numpy as np

    config = runs.RunConfig(units=(16, 16), jit_compile=True).resolved((2,))
    model = runs.build_model(config, (2,), (-4.5, 4.5))
    assert model.jit_compile is True
    graph = dataclasses.replace(config, jit_compile=False)
    assert runs.build_model(graph, (2,), (-4.5, 4.5)).jit_compile is False
    x = np.random.default_rng(0).normal(size=(256, 2)).astype("float32")
    history = model.fit(x, batch_size=128, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert int(model.optimizer.iterations) == 4
