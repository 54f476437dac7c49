"""Seeded 2D training runs through the public API: hashes of weights, buffer, samples.

    python benchmarks/bench_bit_identity.py [ula anneal mala]

Run it before and after a refactoring that must not change behaviour: equal
hashes mean bit-identical weights, replay buffer and samples (CPU). The three runs
cover unadjusted Langevin, annealed Langevin and MALA with the hinge-KR loss.
"""

import hashlib
import sys

import numpy as np

import deel_ebm

# isort: split
import tensorflow as tf

from deel_ebm import datasets


def digest(arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def run(kind):
    tf.keras.utils.set_random_seed(0)
    x_train, x_val = datasets.load_2d("8gaussians", n_train=4096, n_test=512)
    net = deel_ebm.nets.lipschitz_mlp(input_shape=(2,), units=(64, 64))
    if kind == "ula":
        sampler = deel_ebm.LangevinSampler(num_steps=20, step_size=5e-3)
    elif kind == "anneal":
        sampler = deel_ebm.LangevinSampler(
            num_steps=20, step_size=5e-3, init_temperature=3.0, anneal_fraction=0.5
        )
    else:
        sampler = deel_ebm.MALASampler(num_steps=20, step_size=5e-3)
    model = deel_ebm.EnergyModel(
        net,
        k_coef_lip=20.0,
        sampler=sampler,
        buffer=deel_ebm.ReplayBuffer(
            capacity=2000, reinit_prob=0.05, domain=(-4.5, 4.5)
        ),
        loss="hkr" if kind == "mala" else None,
        seed=3,
    )
    model.compile(
        optimizer=tf.keras.optimizers.Adam(
            1e-3, beta_1=0.0, use_ema=True, ema_momentum=0.99
        )
    )
    model.fit(x_train, batch_size=256, epochs=2, verbose=0)
    w = digest([v.numpy() for v in model.network.weights])
    b = digest([model.buffer.storage.numpy()])
    s = digest([model.sample(64, seed=5).numpy()])
    print(f"{kind}: weights {w} buffer {b} sample {s}", flush=True)


for kind in sys.argv[1:] or ["ula", "anneal", "mala"]:
    run(kind)
