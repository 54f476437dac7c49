r"""A network's inference pass with its convolutions as matrix products.

Inside a chain the network is evaluated with its cached weights (deel-lip's
constrained kernels ``wbar``), thousands of times per train step. On a CPU, XLA
runs a small-image convolution and its input gradient far below the machine's
matrix-product rate; the same convolution written as one matrix product of its
patches — ``pad``, ``kh·kw`` shifted slices concatenated on the channels, a GEMM
with the kernel reshaped to ``(kh·kw·c_in, c_out)`` — computes the same function
with the same FLOPs, and its gradient is slices, pads and GEMMs too
(``benchmarks/bench_conv_chain.py`` measures both).

:func:`inference_forward` builds that pass for a ``Sequential`` network whose
convolutions are plain 2D ones (Keras ``Conv2D``, deel-lip ``SpectralConv2D`` /
``FrobeniusConv2D``: stride 1, no dilation, one group, ``same`` or ``valid``
padding, channels last) and checks it against the network itself on a probe
batch — outputs and input gradients — before it is used; any other network (a
subclass of those layers too), or a check that fails, keeps the network's own
call; a batch whose image size is unknown when traced runs the layer's own call.
Only inference (``training=False``) goes through it: training passes recompute
the constrained kernels as deel-lip does, and the exports build their own stock
networks.
"""

from __future__ import annotations

from typing import Callable

from deel.lip.layers import FrobeniusConv2D, SpectralConv2D

from deel_ebm._backend import keras, tf

__all__ = ["inference_forward", "patch_conv2d"]

#: relative tolerance of the probe check (float32 sums in another order)
CHECK_RTOL = 1e-4
_PROBE = 8


def patch_conv2d(x, kernel, padding: str):
    """``conv2d(x, kernel, stride 1, padding)`` as one GEMM of the patches of ``x``.

    ``x``: ``(n, h, w, c_in)``; ``kernel``: ``(kh, kw, c_in, c_out)``;
    ``padding``: ``"same"`` or ``"valid"`` (Keras' meaning).
    """
    kh, kw, cin, cout = kernel.shape
    if padding == "same":
        ph, pw = kh - 1, kw - 1
        x = tf.pad(
            x, [[0, 0], [ph // 2, ph - ph // 2], [pw // 2, pw - pw // 2], [0, 0]]
        )
    elif padding != "valid":
        raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
    h, w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    cols = [x[:, a : a + h, b : b + w, :] for a in range(kh) for b in range(kw)]
    patches = tf.reshape(tf.concat(cols, axis=-1), [-1, kh * kw * cin])
    out = tf.matmul(patches, tf.reshape(kernel, [kh * kw * cin, cout]))
    return tf.reshape(out, [-1, h, w, cout])


def _is_plain_conv(layer) -> bool:
    # the exact classes whose inference call is conv2d(x, kernel) + bias, then the
    # activation: a subclass may do more, whatever its name, and is not rewritten
    if type(layer) not in (keras.layers.Conv2D, SpectralConv2D, FrobeniusConv2D):
        return False
    return (
        tuple(layer.strides) == (1, 1)
        and tuple(layer.dilation_rate) == (1, 1)
        and getattr(layer, "groups", 1) == 1
        and layer.padding in ("same", "valid")
        and layer.data_format == "channels_last"
    )


def _conv_step(layer):
    def step(x):
        if x.shape.rank != 4 or x.shape[1] is None or x.shape[2] is None:
            return layer(x, training=False)  # the patches need static sizes
        # deel-lip layers read their cached constrained kernel at inference
        kernel = layer.wbar if hasattr(layer, "wbar") else layer.kernel
        out = patch_conv2d(x, tf.cast(kernel, x.dtype), layer.padding)
        if layer.use_bias:
            out = out + tf.cast(layer.bias, out.dtype)
        return out if layer.activation is None else layer.activation(out)

    return step


def _layer_step(layer):
    return lambda x: layer(x, training=False)


def inference_forward(network, input_shape) -> Callable | None:
    """``x -> network(x, training=False)`` with plain convolutions as GEMMs.

    Returns ``None`` (use the network's own call) when ``network`` is not a
    ``Sequential`` model, has no rewritable convolution, or when the rewritten
    pass disagrees with the network on a probe batch (outputs or input
    gradients beyond :data:`CHECK_RTOL` of their scale).
    """
    if not isinstance(network, keras.Sequential):
        return None
    layers = [
        la for la in network.layers if not isinstance(la, keras.layers.InputLayer)
    ]
    if not any(_is_plain_conv(la) for la in layers):
        return None
    steps = [_conv_step(la) if _is_plain_conv(la) else _layer_step(la) for la in layers]

    def forward(x):
        for step in steps:
            x = step(x)
        return x

    probe = tf.random.stateless_uniform(
        [_PROBE, *input_shape], seed=[7, 11], minval=-1.0, maxval=1.0
    )
    if not _agrees(forward, lambda x: network(x, training=False), probe):
        return None
    return forward


def _agrees(fast, reference, x) -> bool:
    outs, grads = [], []
    for fn in (fast, reference):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = fn(x)
            total = tf.reduce_sum(
                out * tf.cast(tf.range(1, out.shape[-1] + 1), out.dtype)
            )
        outs.append(out)
        grads.append(tape.gradient(total, x))
    if outs[0].shape != outs[1].shape or grads[0] is None or grads[1] is None:
        return False
    for a, b in ((outs[0], outs[1]), (grads[0], grads[1])):
        scale = float(tf.reduce_max(tf.abs(b))) + 1e-6
        if float(tf.reduce_max(tf.abs(a - b))) > CHECK_RTOL * scale:
            return False
    return True
