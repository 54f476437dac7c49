"""NetworkCallback: run a Keras callback on the energy network of the model."""

from __future__ import annotations

from deel_ebm._backend import keras

__all__ = ["NetworkCallback"]

_DEEL_LIP_MODULE = "deel.lip.callbacks"
#: deel-lip callbacks whose ``get_config`` fails on Keras 2 (it calls the missing
#: ``Callback.get_config``) or leaves out arguments: their constructor arguments,
#: read back from the attributes of the same names.
_DEEL_LIP_ARGS = {
    "CondenseCallback": ("on_epoch", "on_batch"),
    "MonitorCallback": (
        "monitored_layers",
        "logdir",
        "target",
        "what",
        "on_epoch",
        "on_batch",
    ),
}
_HOOKS = (
    "on_train_begin on_train_end on_epoch_begin on_epoch_end "
    "on_train_batch_begin on_train_batch_end on_test_begin on_test_end "
    "on_test_batch_begin on_test_batch_end on_predict_begin on_predict_end "
    "on_predict_batch_begin on_predict_batch_end"
).split()


def _is_deel_lip(cls_module, class_name):
    return cls_module == _DEEL_LIP_MODULE and class_name in _DEEL_LIP_ARGS


def _serialize_callback(callback) -> dict:
    cls = type(callback)
    if _is_deel_lip(cls.__module__, cls.__name__):
        config = {arg: getattr(callback, arg) for arg in _DEEL_LIP_ARGS[cls.__name__]}
        if "monitored_layers" in config:
            config["monitored_layers"] = list(config["monitored_layers"])
        return {
            "module": _DEEL_LIP_MODULE,
            "class_name": cls.__name__,
            "config": config,
        }
    try:
        return keras.utils.serialize_keras_object(callback)
    except (AttributeError, NotImplementedError, TypeError) as err:
        raise TypeError(
            f"NetworkCallback cannot serialise the wrapped callback {callback!r}: it "
            f"needs a working get_config ({err})"
        ) from err


def _deserialize_callback(config):
    if isinstance(config, keras.callbacks.Callback):
        return config
    if not isinstance(config, dict):
        raise TypeError(f"callback config must be a dict, got {config!r}")
    if _is_deel_lip(config.get("module"), config.get("class_name")):
        from deel.lip import callbacks as deel_lip_callbacks

        cls = getattr(deel_lip_callbacks, config["class_name"])
        return cls(**config.get("config", {}))
    return keras.utils.deserialize_keras_object(config)


@keras.utils.register_keras_serializable(package="deel_ebm")
class NetworkCallback(keras.callbacks.Callback):
    """Runs a Keras callback on the energy network ``model.network``.

    deel-lip's ``CondenseCallback`` walks ``model.layers`` and ``MonitorCallback``
    calls ``model.get_layer``: on an :class:`~deel_ebm.EnergyModel` they see the
    network as one nested layer and do nothing (Condense) or fail (Monitor). This
    adaptor gives the wrapped callback ``model.network`` as its model and forwards
    every hook; ``stop_training`` set by the wrapped callback stops the fit.

    ``get_config`` holds the wrapped callback's serialised config: deel-lip's
    ``CondenseCallback`` and ``MonitorCallback`` (whose own ``get_config`` does
    not work on Keras 2) and any callback with a working ``get_config``.

    Args:
        callback: a ``keras.callbacks.Callback``.

    Raises:
        TypeError: when ``callback`` is not a Keras callback; from
            ``get_config`` when it cannot be serialised.

    Example:
        >>> from deel.lip.callbacks import CondenseCallback, MonitorCallback
        >>> history = model.fit(x, epochs=1, verbose=0, callbacks=[
        ...     NetworkCallback(CondenseCallback(on_epoch=True))])
    """

    def __init__(self, callback):
        super().__init__()
        if not isinstance(callback, keras.callbacks.Callback):
            raise TypeError(f"callback must be a Keras callback, got {callback!r}")
        self.callback = callback

    def set_model(self, model):
        super().set_model(model)
        self.callback.set_model(getattr(model, "network", model))

    def set_params(self, params):
        super().set_params(params)
        self.callback.set_params(params)

    def _forward(self, name, *args, **kwargs):
        getattr(self.callback, name)(*args, **kwargs)
        network = self.callback.model
        if getattr(network, "stop_training", False):  # the wrapped callback stops
            network.stop_training = False
            self.model.stop_training = True

    # Keras skips the batch hooks (and their per-batch sync) when no callback
    # implements them: ask the wrapped callback
    def _implements_train_batch_hooks(self):
        return self.callback._implements_train_batch_hooks()

    def _implements_test_batch_hooks(self):
        return self.callback._implements_test_batch_hooks()

    def _implements_predict_batch_hooks(self):
        return self.callback._implements_predict_batch_hooks()

    def get_config(self):
        return {"callback": _serialize_callback(self.callback)}

    @classmethod
    def from_config(cls, config):
        if not isinstance(config, dict) or "callback" not in config:
            raise TypeError(f"config must be a dict with a 'callback', got {config!r}")
        return cls(_deserialize_callback(config["callback"]))


def _forwarder(name):
    def hook(self, *args, **kwargs):
        self._forward(name, *args, **kwargs)

    hook.__name__ = hook.__qualname__ = name
    return hook


for _hook in _HOOKS:
    setattr(NetworkCallback, _hook, _forwarder(_hook))
del _hook
