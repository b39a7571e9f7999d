"""bfloat16 training of the autoencoders against float32, on the quality suite.

For each suite set (``bench_quality.py``'s digits, textures, faces, patches),
fits ``AutoencoderTransformer`` and ``VAETransformer`` at their defaults
(width 16) with ``autocast=False`` and ``autocast=True``, interleaved, and
prints the held-out quality ratio (AE: MSE, lower is better; VAE: ELBO,
higher is better) and the fit-time ratio float32 / bfloat16.

bfloat16 is forced with ``SKLEARN_REPLEARN_CPU_BF16=1`` so that the quality
columns can be measured on any CPU. The speed column means something only
on a CPU that computes bfloat16 natively (AVX512-BF16 or AMX-BF16, printed in
the header); elsewhere bfloat16 is emulated and the estimators' default
(``autocast=True``) trains in float32.

Usage::

    python benchmarks/bench_training_bf16.py [--seeds 0] [--sets digits,faces]
        [--batch-size 128] [--threads 2]
"""

import argparse
import os
import time
import warnings

import _report
import numpy as np
import torch
from bench_quality import load

from sklearn_replearn import AutoencoderTransformer, VAETransformer

os.environ["SKLEARN_REPLEARN_CPU_BF16"] = "1"



def _quality(model, X_test):
    if isinstance(model, VAETransformer):
        return model.score(X_test)  # mean ELBO per row
    return float(np.mean((model.inverse_transform(model.transform(X_test))
                          - X_test) ** 2))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="digits,textures,faces,patches")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    _report.add_save_argument(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    with _report.report(args.save, threads=args.threads):
        run(args)


def run(args):
    print("# bfloat16 forced (SKLEARN_REPLEARN_CPU_BF16=1): emulated where the "
          "flags lack avx512_bf16/amx_bf16")
    print(f"{'set':9} {'estimator':23} {'seed':>4} {'fp32':>10} {'bf16':>10} "
          f"{'bf16/fp32':>9} {'epochs fp32/bf16':>16} {'time fp32/bf16':>14}")
    # A first fit pays one-time costs (imports, kernel selection): one short
    # fit of each estimator in each precision runs before anything is timed.
    X_warm = load(args.sets.split(",")[0], 200, 10)[0]
    for Estimator in (AutoencoderTransformer, VAETransformer):
        for autocast in (False, True):
            Estimator(n_components=4, max_iter=2, tol=None, autocast=autocast,
                      random_state=0).fit(X_warm)
    for name in args.sets.split(","):
        X_train, X_test = load(name, 2000, 1000)[:2]
        for Estimator in (AutoencoderTransformer, VAETransformer):
            for seed in (int(s) for s in args.seeds.split(",")):
                result = {}
                for autocast in (False, True):
                    model = Estimator(n_components=16, autocast=autocast,
                                      batch_size=args.batch_size,
                                      random_state=seed)
                    start = time.perf_counter()
                    model.fit(X_train)
                    seconds = time.perf_counter() - start
                    result[autocast] = (_quality(model, X_test), model.n_iter_,
                                        seconds / model.n_iter_)
                (q32, e32, t32), (q16, e16, t16) = result[False], result[True]
                print(f"{name:9} {Estimator.__name__:23} {seed:>4} {q32:10.5g} "
                      f"{q16:10.5g} {q16 / q32:9.3f} {e32:>8}/{e16:<7} "
                      f"{t32 / t16:14.2f}", flush=True)
    print("# time ratio: seconds per epoch, float32 / bfloat16")


if __name__ == "__main__":
    main()
