"""Sample grid: for each class, (row a) 8 images of the model's PCD buffer after training,
(row b) 8 fresh ULA chains on E = k f from the uniform box (n_steps, eta = 0.02/k), (row c) same
chains with MALA. python sample.py NAME k n_steps"""
import sys, numpy as np
import lipebm as L
import tensorflow as tf
import train as T
import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot as plt

name, k, n_steps = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
import json
cfg = json.load(open(f"results/{name}_test.json"))["config"]
gen = tf.random.Generator.from_seed(1)
fig, axes = plt.subplots(30, 8, figsize=(8, 30))
stats = {}
for c in range(10):
    net = T.build_net(cfg); net(tf.zeros([2, 8, 8, 1]), training=True)
    net.load_weights(f"results/{name}_c{c}.weights.h5"); net(tf.zeros([2, 8, 8, 1]), training=True)
    buf = np.load(f"results/{name}_c{c}_buffer.npy")[:8]
    x0 = L.uniform_box(gen, 8, (8, 8, 1))
    ula = tf.function(lambda x: L.ula(net, x, gen, 50, 0.02 / k, k))
    x = x0
    for _ in range(n_steps // 50):
        x = ula(x)
    xm, acc = tf.function(lambda x: L.mala(net, x, gen, 200, 0.02 / k, k))(x0)
    stats[c] = dict(f_buffer=float(net(buf, training=False).numpy().mean()),
                    f_ula=float(net(x, training=False).numpy().mean()), mala_acc=float(acc))
    for j, (row, imgs) in enumerate((("buffer", buf), ("ula", x.numpy()), ("mala200", xm.numpy()))):
        for i in range(8):
            ax = axes[3 * c + j, i]; ax.imshow(imgs[i, :, :, 0], cmap="gray", vmin=-1, vmax=1); ax.axis("off")
        axes[3 * c + j, 0].set_title(f"{c} {row}", fontsize=6, loc="left")
    print(c, stats[c], flush=True)
plt.tight_layout(); plt.savefig(f"results/{name}_samples.png", dpi=60)
json.dump(stats, open(f"results/{name}_samples.json", "w"))
