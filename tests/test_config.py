import pytest

from mlplab.config import TrainConfig, parse_hidden, parse_init


def test_defaults_are_the_course_mlp():
    c = TrainConfig()
    assert c.hidden == (256,) and c.activation == "relu" and c.init == "uniform" and c.init_scale == 0.01
    assert c.optimizer == "sgd" and c.lr == 0.1 and c.batch_size == 128 and c.epochs == 10


def test_names_are_normalised_and_scales_resolved():
    c = TrainConfig(init="Glorot-Uniform", activation="linear", hidden=[64, 32])
    assert c.init == "xavier_uniform" and c.init_scale == 1.0 and c.activation == "identity"
    assert c.hidden == (64, 32)
    assert TrainConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize("kwargs, match", [
    ({"hidden": (0,)}, "hidden sizes must be >= 1"),
    ({"hidden": (-3,)}, "hidden sizes must be >= 1"),
    ({"hidden": ("a",)}, "hidden must be a list"),
    ({"activation": "swish"}, "unknown activation 'swish'; choose one of: relu"),
    ({"init": "orthogonal"}, "unknown init 'orthogonal'; choose one of: zeros"),
    ({"optimizer": "lbfgs"}, "unknown optimizer 'lbfgs'; choose one of: sgd, adam, adamw"),
    ({"lr": 0.0}, "lr must be > 0"),
    ({"lr": -0.1}, "lr must be > 0, got -0.1"),
    ({"lr": float("nan")}, "lr must be finite"),
    ({"lr": float("inf")}, "lr must be finite"),
    ({"lr": "0.1"}, "lr must be a number"),
    ({"batch_size": 0}, "batch_size must be >= 1"),
    ({"batch_size": 50_001}, "batch_size must be <= the 50000 training images"),
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"momentum": 1.0}, "momentum must be < 1"),
    ({"nesterov": True}, "nesterov needs optimizer sgd with momentum > 0"),
    ({"init_scale": 0.0}, "init_scale must be > 0"),
])
def test_bad_values_are_clear_errors(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        TrainConfig(**kwargs)


def test_unknown_keys_are_rejected():
    with pytest.raises(ValueError, match="unknown setting.*learning_rate"):
        TrainConfig.from_dict({"learning_rate": 0.1})


def test_parsers():
    assert parse_hidden("256") == (256,) and parse_hidden("512,512") == (512, 512)
    assert parse_hidden("none") == () and parse_hidden("") == ()
    for bad in ("abc", "256,x", "0", "-4"):
        with pytest.raises(ValueError):
            parse_hidden(bad)
    assert parse_init("uniform:0.05") == ("uniform", 0.05) and parse_init("he_normal") == ("he_normal", None)
    with pytest.raises(ValueError, match="NAME:SCALE"):
        parse_init("uniform:x")
