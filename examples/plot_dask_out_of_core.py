"""
=============================================================
Scaling out: a Dask grid search and partial_fit out of core
=============================================================

The estimators are ordinary scikit-learn estimators that pickle cleanly, so
the usual tools for scaling scikit-learn apply to them unchanged:

* **model selection across workers**: ``GridSearchCV`` runs its fits
  through joblib, and joblib's ``"dask"`` backend sends them to the workers
  of a Dask cluster (a laptop's cores here, a cluster's machines in
  production);
* **data larger than memory**: ``partial_fit`` trains one epoch on one chunk
  at a time, so a model can learn from a file read chunk by chunk, and
  :func:`sklearn_replearn.scale.dask_transform` transforms a Dask array
  block by block, lazily.

This example runs both on a small local cluster (two threads in this
process, ``processes=False``), on the 8x8 digits: the data are small, so the
point is the code, which is the same for a cluster and for data on disk
that would not fit in memory.
"""

# %%
# A local Dask cluster
# --------------------
import os
import tempfile
import time
import warnings

import dask.array as da
import joblib
import matplotlib.pyplot as plt
import numpy as np
from distributed import Client, LocalCluster
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_replearn import AutoencoderTransformer
from sklearn_replearn.scale import dask_transform

cluster = LocalCluster(
    n_workers=1,
    threads_per_worker=2,
    processes=False,
    dashboard_address=":0",
)
client = Client(cluster)
print(
    f"workers: {len(client.scheduler_info()['workers'])}, threads: "
    f"{sum(client.nthreads().values())}"
)

digits = load_digits()
X = (digits.data / 16.0).astype(np.float32)
X_train, X_test, y_train, y_test = train_test_split(
    X, digits.target, test_size=0.25, stratify=digits.target, random_state=0
)

# %%
# A grid search on the cluster
# ----------------------------
# An autoencoder followed by a logistic regression; the grid varies the
# code's width and the penalty of the classifier: 4 settings x 3 folds = 12
# fits, which joblib hands to the Dask workers. Nothing in the estimator
# knows about Dask.
pipeline = Pipeline(
    [
        (
            "autoencoder",
            AutoencoderTransformer(
                max_iter=15, random_state=0, device="cpu"
            ),
        ),
        ("scale", StandardScaler()),
        ("classify", LogisticRegression(max_iter=2000)),
    ]
)
grid = {"autoencoder__n_components": [8, 16], "classify__C": [0.1, 1.0]}
search = GridSearchCV(pipeline, grid, cv=3)
start = time.perf_counter()
with warnings.catch_warnings(), joblib.parallel_backend("dask"):
    warnings.simplefilter("ignore", ConvergenceWarning)  # 15 epochs only
    search.fit(X_train, y_train)
print(
    f"12 fits and the refit on the Dask cluster in "
    f"{time.perf_counter() - start:.1f} s"
)

print(f"{'n_components':>12}{'C':>6}{'mean CV accuracy':>18}")
results = search.cv_results_
for params, score in zip(results["params"], results["mean_test_score"]):
    print(
        f"{params['autoencoder__n_components']:>12}{params['classify__C']:>6}"
        f"{score:>18.3f}"
    )
print(
    f"best: {search.best_params_}, held-out accuracy "
    f"{search.score(X_test, y_test):.3f}"
)

# %%
# Out of core: partial_fit over chunks read from disk
# ---------------------------------------------------
# The training digits are written to a ``.npy`` file and opened as a memory
# map: only the chunk being read is in memory. Each ``partial_fit`` call
# trains one epoch on one chunk (the first call builds the network); a pass
# over the chunks is one epoch over the data. The same loop works for a file
# of any size, or for chunks coming from a database or a stream.
folder = tempfile.mkdtemp()
path = os.path.join(folder, "digits.npy")
np.save(path, X_train)
on_disk = np.load(path, mmap_mode="r")

online = AutoencoderTransformer(
    n_components=16, random_state=0, device="cpu"
)
chunk_size = 256
passes = 10
test_scores = []
start = time.perf_counter()
for _ in range(passes):
    for begin in range(0, len(on_disk), chunk_size):
        chunk = np.asarray(
            on_disk[begin : begin + chunk_size]
        )  # read one chunk
        online.partial_fit(chunk)
    test_scores.append(online.score(X_test))
online_seconds = time.perf_counter() - start
n_chunks = -(-len(on_disk) // chunk_size)
print(
    f"{passes} passes over {n_chunks} chunks of {chunk_size} rows "
    f"({online.n_iter_} partial_fit calls) in {online_seconds:.1f} s"
)

# %%
# The same model fitted in memory with ``fit`` for the same number of epochs
# over all the rows, for comparison. ``score`` is minus the mean squared
# reconstruction error on the held-out digits.
start = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    in_memory = AutoencoderTransformer(
        n_components=16,
        max_iter=passes,
        early_stopping=False,
        tol=None,
        random_state=0,
        device="cpu",
    ).fit(X_train)
print(
    f"in memory, {passes} epochs of fit: {time.perf_counter() - start:.1f} s"
)
print(
    f"held-out score, partial_fit over chunks: {online.score(X_test):.5f}"
)
print(
    f"held-out score, fit in memory:           {in_memory.score(X_test):.5f}"
)

fig, ax = plt.subplots(figsize=(5, 3.2))
ax.plot(
    range(1, passes + 1), test_scores, "o-", label="partial_fit, chunks"
)
ax.axhline(
    in_memory.score(X_test),
    color="gray",
    linestyle="--",
    label=f"fit in memory, {passes} epochs",
)
ax.set_xlabel("passes over the file")
ax.set_ylabel("held-out score (-MSE)")
ax.legend()
ax.set_title("training out of core")
plt.show()

# %%
# The two are not identical: ``fit`` starts from a PCA solution and shuffles
# all rows each epoch, while each ``partial_fit`` call sees one chunk (its
# first call starts from that chunk alone). Here they reach about the same
# held-out score.
#
# Transforming a Dask array lazily
# --------------------------------
# ``dask_transform`` maps a fitted transformer over the row blocks of a Dask
# array. The result is lazy, with the right shape before anything runs;
# ``compute`` runs one task per block on the cluster.
X_dask = da.from_array(X_test, chunks=(100, 64))
codes = dask_transform(online, X_dask)
print(
    f"input {X_dask.shape} in {X_dask.numblocks[0]} blocks -> lazy codes "
    f"{codes.shape}"
)
computed = codes.compute()
print(
    f"computed codes equal the in-memory transform: "
    f"{np.allclose(computed, online.transform(X_test), atol=1e-5)}"
)

# %%
# Close the cluster and remove the file.
client.close()
cluster.close()
os.remove(path)
os.rmdir(folder)
