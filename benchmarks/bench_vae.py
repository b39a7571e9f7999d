"""Fit time and held-out ELBO of VAETransformer against a plain torch VAE loop.

Two problems, each trained by both contenders with the same architecture,
optimizer (Adam, lr 1e-3), batch size (128), epochs and likelihood:

* ``digits``: sklearn's 8x8 digits scaled to [0, 1], 1347 training rows (a
  fixed 75/25 split), Bernoulli likelihood, 64-128-8, 100 epochs. The issue
  measured about -24.5 nats/sample (train) for such a loop.
* ``synthetic``: the 20000 x 784 set of ``bench_autoencoder.py`` (a 10-d
  latent through a fixed random tanh map plus noise), Gaussian likelihood with
  a learned per-feature variance, 784-256-16, 10 epochs; the ELBO is measured
  on 2000 fresh rows of the same distribution.

Contenders, interleaved (one of each per repeat, after one warm-up fit each),
medians reported:

* ``replearn``: ``VAETransformer`` (skorch engine, whole-batch fetching) with
  ``early_stopping=False``, trained on all rows as the loop;
* ``torch loop``: a hand-written torch loop of the same model (the floor);
* ``torch loop, fused Adam``: the same loop with ``Adam(fused=True)``, which
  ``VAETransformer``'s engine uses: the like-for-like comparison.

The held-out ELBO of both is computed by the same evaluator here (exact KL,
reconstruction term averaged over 20 posterior draws), so the two are compared
on equal terms; ``score`` is ``VAETransformer``'s own one-draw estimate.

Run::

    python benchmarks/bench_vae.py              # full (several minutes on CPU)
    python benchmarks/bench_vae.py --quick      # fewer epochs and rows
    python benchmarks/bench_vae.py --device cuda
    python benchmarks/bench_vae.py --threads 1 --only digits
    python benchmarks/bench_vae.py --quick --threads 1 --save   # the docs' report

Tiny models on many CPU threads time noisily (each small op wakes the thread
pool): ratios moved by up to 0.1 between runs on one quiet 16-core machine, so
compare medians of several runs, or pin ``--threads``.
"""

import argparse
import math
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits
from torch import nn

from sklearn_replearn import VAETransformer
from sklearn_replearn._engine import fused_optimizer_kwargs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _report  # noqa: E402
from bench_autoencoder import make_data  # noqa: E402

LOG_2PI = math.log(2 * math.pi)


def log_likelihood(likelihood, raw, x, noise_logvar):
    if likelihood == "bernoulli":
        return -F.binary_cross_entropy_with_logits(raw, x, reduction="none").sum(1)
    return -0.5 * ((x - raw).pow(2) * torch.exp(-noise_logvar) + noise_logvar
                   + LOG_2PI).sum(1)


class PlainVAE(nn.Module):
    """The model a careful user writes by hand."""

    def __init__(self, n_features, hidden, n_latent, likelihood):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(),
                                     nn.Linear(hidden, 2 * n_latent))
        self.decoder = nn.Sequential(nn.Linear(n_latent, hidden), nn.ReLU(),
                                     nn.Linear(hidden, n_features))
        self.likelihood = likelihood
        self.noise_logvar = nn.Parameter(torch.zeros(n_features),
                                         requires_grad=likelihood == "gaussian")


def fit_torch_loop(X, problem, device, fused=None):
    torch.manual_seed(0)
    model = PlainVAE(X.shape[1], problem["hidden"], problem["n_latent"],
                     problem["likelihood"]).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-3, fused=fused)
    data = torch.from_numpy(X).to(device)
    batch_size = problem["batch_size"]
    for _ in range(problem["epochs"]):
        order = torch.randperm(len(data), device=device)
        for start in range(0, len(data), batch_size):
            x = data[order[start:start + batch_size]]
            mu, logvar = model.encoder(x).chunk(2, dim=1)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            log_px = log_likelihood(model.likelihood, model.decoder(z), x,
                                    model.noise_logvar)
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
            loss = (kl - log_px).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return model


def fit_replearn(X, problem, device):
    model = VAETransformer(
        n_components=problem["n_latent"], hidden_layer_sizes=(problem["hidden"],),
        likelihood=problem["likelihood"], max_iter=problem["epochs"],
        batch_size=problem["batch_size"], tol=None, early_stopping=False,
        device=str(device), random_state=0,
    ).fit(X)  # on all rows, as the loop (early stopping holds out 10%)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return model


def heldout_elbo(module, likelihood, X, device, n_draws=20):
    """Mean ELBO per sample: exact KL, reconstruction over ``n_draws`` draws."""
    generator = torch.Generator(device=device).manual_seed(1)
    x = torch.from_numpy(X).to(device)
    noise_logvar = getattr(module, "noise_logvar", None)
    with torch.no_grad():
        mu, logvar = module.encoder(x).chunk(2, dim=1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
        log_px = 0.0
        for _ in range(n_draws):
            eps = torch.randn(mu.shape, generator=generator, device=device)
            raw = module.decoder(mu + torch.exp(0.5 * logvar) * eps)
            log_px = log_px + log_likelihood(likelihood, raw, x, noise_logvar)
        return float((log_px / n_draws - kl).mean())


def problems(quick):
    digits = (load_digits().data / 16.0).astype(np.float32)
    digits_train, digits_test = train_test_split(digits, test_size=0.25,
                                                 random_state=0)
    n_rows = 5000 if quick else 20000
    synthetic = make_data(n_rows + 2000, seed=0)
    return {
        "digits": dict(train=digits_train, test=digits_test, likelihood="bernoulli",
                       hidden=128, n_latent=8, batch_size=128,
                       epochs=20 if quick else 100),
        f"synthetic {n_rows}x784": dict(
            train=synthetic[:n_rows], test=synthetic[n_rows:], likelihood="gaussian",
            hidden=256, n_latent=16, batch_size=128, epochs=3 if quick else 10),
    }


def fit_torch_loop_fused(X, problem, device):
    # fused=True where this torch has the kernel (the CPU since torch 2.4).
    fused = fused_optimizer_kwargs(torch.optim.Adam, device).get("fused")
    return fit_torch_loop(X, problem, device, fused=fused)


CONTENDERS = {"replearn": fit_replearn, "torch loop": fit_torch_loop,
              "torch loop, fused Adam": fit_torch_loop_fused}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="20 digits epochs, 5000x784 for 3 epochs, 2 repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", default=None, help="run only problems "
                        "whose name starts with this")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads and numpy's BLAS threads (the "
                        "learned noise variance starts from a PCA); default: "
                        "the libraries' choice")
    _report.add_save_argument(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    variant = "-".join(part for part in (args.only, args.quick and "quick")
                       if part)
    with _report.report(args.save, device=args.device, variant=variant or None):
        run(args)


def run(args):
    device = torch.device(args.device)
    repeats = args.repeats or (2 if args.quick else 5)
    print(f"# {repeats} interleaved repeats after a warm-up, medians")
    print("| problem | epochs | contender | fit s (median) | / torch loop "
          "| held-out ELBO | score |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for name, problem in problems(args.quick).items():
        if args.only and not name.startswith(args.only):
            continue
        X, X_test = problem["train"], problem["test"]
        warm = dict(problem, epochs=1)
        for fit in CONTENDERS.values():
            fit(X[:1024], warm, device)
        times = {contender: [] for contender in CONTENDERS}
        models = {}
        for _ in range(repeats):
            for contender, fit in CONTENDERS.items():
                start = time.perf_counter()
                models[contender] = fit(X, problem, device)
                times[contender].append(time.perf_counter() - start)
        floor = statistics.median(times["torch loop"])
        for contender, model in models.items():
            module = model.module_ if contender == "replearn" else model
            elbo = heldout_elbo(module, problem["likelihood"], X_test, device)
            score = f"{model.score(X_test):.2f}" if contender == "replearn" else "-"
            median = statistics.median(times[contender])
            print(f"| {name} | {problem['epochs']} | {contender} | {median:.2f} "
                  f"| {median / floor:.3f} | {elbo:.2f} | {score} |", flush=True)


if __name__ == "__main__":
    main()
