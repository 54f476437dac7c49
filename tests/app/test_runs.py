"""RunConfig, its command-line options and build_model's factories."""

import dataclasses

import pytest

import deel_ebm
from deel_ebm.app import cli, runs
from deel_ebm.core import buffers, losses, samplers


def test_every_recipe_field_is_a_train_option_with_its_default():
    args = cli.build_parser().parse_args(["train", "--dataset", "rings", "--out", "r"])
    assert cli._config_from_args(args) == runs.RunConfig(dataset="rings")
    options = {name for name, _, _ in cli.recipe_options()}
    fields = {f.name for f in dataclasses.fields(runs.RunConfig)}
    assert options == fields - {"dataset"}
    for _, flag, kwargs in cli.recipe_options():
        shown = "(off by default)" if "action" in kwargs else "(default: "
        assert shown in kwargs["help"], flag


def test_options_reach_the_config():
    argv = ["train", "--dataset", "moons", "--out", "r", "--k", "7", "--units", "8"]
    argv += ["--unconstrained", "--ema-momentum", "none", "--domain", "-2", "2"]
    argv += ["--max-minutes", "0.5", "--lr", "0.01"]
    config = cli._config_from_args(cli.build_parser().parse_args(argv))
    assert config.k_coef_lip == 7.0 and config.units == (8,)
    assert config.lipschitz is False and config.ema_momentum is None
    assert config.domain == (-2.0, 2.0) and config.max_minutes == 0.5
    assert config.learning_rate == 0.01


def test_recipe_defaults_are_the_constructors_constants():
    config = runs.RunConfig()
    assert config.num_steps == samplers.DEFAULT_NUM_STEPS
    assert config.step_size == samplers.DEFAULT_STEP_SIZE
    assert config.buffer_size == buffers.DEFAULT_CAPACITY
    assert config.reinit_prob == buffers.DEFAULT_REINIT_PROB
    assert config.l2_weight == losses.DEFAULT_L2_WEIGHT
    assert config.units == deel_ebm.nets.DEFAULT_UNITS


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
