"""Images/s of PretrainedCNNFeatures.transform vs plain torchvision loops.

For each backbone (random weights: speed does not depend on their values) and
224 x 224 images, batch 32, this times, interleaved and repeated (medians):

* ``eager``: what most users (and img2vec) write: the weights' preprocessing
  (``ImageClassification``: resize 256, crop 224, normalise) on each uint8
  batch, then ``model(x)`` under ``torch.no_grad()`` on the contiguous
  (N, C, H, W) batch that ``torch.stack`` / a DataLoader's collate gives (as
  img2vec's ``torch.stack`` of per-image tensors does);
* ``tuned``: the same loop hand-tuned: channels-last model and input,
  ``torch.inference_mode()`` (and float16 autocast on CUDA);
* ``ours``: ``PretrainedCNNFeatures(...).transform(X)`` on the same uint8 array;
* ``files``: ``transform`` on the same images saved as JPEG files, at its
  defaults (``num_workers=0``: decoded in the main process);
* ``files wN``: the same with ``--num-workers`` (N) DataLoader workers,
  whose start costs each call a fixed time.

On a CPU, ``ours`` and ``files`` run in float32 (``autocast=False``), and two
more columns compare bfloat16 (run on every CPU; fast only on those with
AVX512-BF16 or AMX, where ``autocast=True`` picks it by default):

* ``loop bf16``: the tuned loop with its batch norms folded into the
  convolutions (``torch.fx.experimental.optimization.fuse``) under
  ``torch.autocast("cpu", dtype=torch.bfloat16)``;
* ``ours bf16``: ``transform`` with ``autocast=True`` (forced to bfloat16).

Ratios printed: ours/eager, ours/tuned, files/ours, files wN/ours, and on a CPU
bf16/fp32 (ours bf16 / ours) and ours bf16 / loop bf16. Run it on a quiet machine;
on a shared one the numbers are noisy::

    python benchmarks/bench_pretrained.py            # resnet18 and resnet50
    python benchmarks/bench_pretrained.py --quick    # fewer images and repeats
    python benchmarks/bench_pretrained.py --memory   # peak memory, not speed
    python benchmarks/bench_pretrained.py --compiled --images 96 --backbones resnet18
    python benchmarks/bench_pretrained.py --backbones timm:convnext_tiny hf:vit-small
    python benchmarks/bench_pretrained.py --quick --save   # the docs' report

``timm:<name>`` rows compare with ``timm.create_model(name, num_classes=0)``
and timm's preprocessing; ``hf:vit-small`` builds a random ViT-S/16 (the
width and depth of DINOv2-small), saves it with ``save_pretrained`` and
compares with its ``transformers`` model's mean patch token.

``--compiled`` prints the CPU model and its bfloat16 instruction sets, a
matmul peak measured in the same run, and compares ``transform`` at its
defaults with a compiled, frozen hand-written loop, with the compile time and
the break-even number of images (see ``bench_compiled.py``).

``--memory`` transforms JPEG files of 64, 256 and 1024 images at batch sizes 8 and
32, each in a fresh process, and prints the peak resident memory the
transform added: it must grow with the batch size, not with the number of
images (the features themselves, 2 KiB per image for resnet18, are all that
scales with the data).
"""

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time

import _report
import numpy as np
import torch
import torchvision
from PIL import Image
from sklearn.datasets import load_sample_images
from torchvision.transforms._presets import ImageClassification

from sklearn_replearn import PretrainedCNNFeatures


def make_images(n_images, size=224, seed=0):
    """Random ``size`` crops of sklearn's two sample photos, uint8 (N, H, W, 3)."""
    photos = load_sample_images().images
    rng = np.random.RandomState(seed)
    images = np.empty((n_images, size, size, 3), np.uint8)
    for index in range(n_images):
        photo = photos[index % len(photos)]
        top = rng.randint(photo.shape[0] - size)
        left = rng.randint(photo.shape[1] - size)
        images[index] = photo[top:top + size, left:left + size]
    return images


def eager_loop(model, preprocess, images, batch_size, device):
    outputs = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(images[start:start + batch_size])
            # The permuted uint8 view would carry channels-last strides
            # through the resize; users' batches come from torch.stack.
            x = preprocess(batch.permute(0, 3, 1, 2)).contiguous().to(device)
            outputs.append(model(x).cpu())
    return torch.cat(outputs)


def tuned_loop(model, preprocess, images, batch_size, device):
    outputs = []
    autocast = (torch.autocast("cuda", torch.float16) if device == "cuda"
                else contextlib.nullcontext())
    with torch.inference_mode(), autocast:
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(images[start:start + batch_size])
            x = preprocess(batch.permute(0, 3, 1, 2)).to(device)
            x = x.contiguous(memory_format=torch.channels_last)
            outputs.append(model(x).float().cpu())
    return torch.cat(outputs)


def bf16_loop(model, preprocess, images, batch_size):
    outputs = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(images[start:start + batch_size])
            x = preprocess(batch.permute(0, 3, 1, 2))
            x = x.contiguous(memory_format=torch.channels_last)
            outputs.append(model(x).float())
    return torch.cat(outputs)


class _MeanPatchToken(torch.nn.Module):
    """A Hugging Face ViT's mean patch token, as ``pooling="avg"`` gives it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(pixel_values=x).last_hidden_state[:, 1:].mean(1)


def hf_vit_folder(folder):
    """A ViT-S/16 (DINOv2-small's width and depth), random, saved to ``folder``."""
    import transformers

    config = transformers.ViTConfig(
        image_size=224, patch_size=16, hidden_size=384, num_hidden_layers=12,
        num_attention_heads=6, intermediate_size=1536)
    torch.manual_seed(0)
    transformers.ViTModel(config).save_pretrained(folder)
    return f"hf:{folder}"


def reference(name):
    """(features module, its preprocessing) written by hand for ``name``."""
    if name.startswith("timm:"):
        import math

        import timm
        from torchvision.transforms import InterpolationMode

        model = timm.create_model(name[5:], num_classes=0).eval()  # pre-logits
        config = timm.data.resolve_data_config({}, model=model)
        preprocess = ImageClassification(
            crop_size=224, resize_size=math.floor(224 / config["crop_pct"]),
            mean=config["mean"], std=config["std"],
            interpolation=InterpolationMode.BICUBIC)
        return model, preprocess
    if name.startswith("hf:"):
        import transformers

        model = transformers.AutoModel.from_pretrained(name[3:]).eval()
        preprocess = ImageClassification(crop_size=224, resize_size=224)
        return _MeanPatchToken(model), preprocess
    model = torchvision.models.get_model(name).eval()
    model.fc = torch.nn.Identity()  # features, as PretrainedCNNFeatures
    return model, ImageClassification(crop_size=224, resize_size=256)


def fold(model):
    """Batch norms folded by torch.fx (models fx cannot trace: unchanged)."""
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(model)
    except Exception:  # noqa: BLE001 -- e.g. Hugging Face models
        return model


def bench_backbone(name, images, paths, args):
    torch.manual_seed(0)
    device = args.device
    eager_model, preprocess = reference(name)
    eager_model = eager_model.to(device)
    tuned_model = reference(name)[0]
    tuned_model = tuned_model.to(device, memory_format=torch.channels_last)
    # float32 on a CPU (autocast=True would pick bfloat16 on AVX512-BF16).
    fp32 = device != "cpu"
    ours = PretrainedCNNFeatures(name, weights=None, batch_size=args.batch_size,
                                 autocast=fp32, device=device,
                                 random_state=0).fit(images[:1])
    files = PretrainedCNNFeatures(name, weights=None, batch_size=args.batch_size,
                                  autocast=fp32, device=device,
                                  random_state=0).fit(images[:1])
    workers = PretrainedCNNFeatures(name, weights=None, batch_size=args.batch_size,
                                    num_workers=args.num_workers, autocast=fp32,
                                    device=device, random_state=0).fit(images[:1])
    methods = {
        "eager": lambda: eager_loop(eager_model, preprocess, images,
                                    args.batch_size, device),
        "tuned": lambda: tuned_loop(tuned_model, preprocess, images,
                                    args.batch_size, device),
        "ours": lambda: ours.transform(images),
        "files": lambda: files.transform(paths),
        "files wN": lambda: workers.transform(paths),
    }
    if device == "cpu":
        os.environ["SKLEARN_REPLEARN_CPU_BF16"] = "1"  # bfloat16 on any CPU
        bf16_model = fold(tuned_model).to(memory_format=torch.channels_last)
        ours_bf16 = PretrainedCNNFeatures(name, weights=None, autocast=True,
                                          batch_size=args.batch_size, device=device,
                                          random_state=0).fit(images[:1])
        methods["loop bf16"] = lambda: bf16_loop(bf16_model, preprocess, images,
                                                 args.batch_size)
        methods["ours bf16"] = lambda: ours_bf16.transform(images)
    if args.compile:
        compiled = PretrainedCNNFeatures(name, weights=None, compile=True,
                                         batch_size=args.batch_size, device=device,
                                         random_state=0).fit(images[:1])
        compiled.transform(images[:args.batch_size])  # compile outside the timing
        methods["ours+compile"] = lambda: compiled.transform(images)
    for method in methods.values():  # warm-up (allocator, oneDNN kernels)
        method()
    rates = {key: [] for key in methods}
    for _ in range(args.repeats):
        for key, method in methods.items():  # interleaved
            start = time.perf_counter()
            method()
            rates[key].append(len(images) / (time.perf_counter() - start))
    return {key: statistics.median(values) for key, values in rates.items()}


def _status_mib(field):
    """A memory figure of this process from /proc/self/status, in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_growth(folder, n_images, batch_size, backbone):
    """Peak RSS added by transforming ``n_images`` files (run in a fresh process)."""
    paths = sorted(os.path.join(folder, name) for name in os.listdir(folder))
    paths = (paths * (n_images // len(paths) + 1))[:n_images]
    features = PretrainedCNNFeatures(backbone, weights=None, batch_size=batch_size,
                                     random_state=0).fit(make_images(1))
    features.transform(paths[:1])  # load kernels and caches outside the measure
    # Reset the peak (VmHWM) to the current resident size, so that the peak
    # read afterwards is the transform's own, not fit's or the warm-up's.
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    before = _status_mib("VmRSS")
    features.transform(paths)
    return _status_mib("VmHWM") - before


def memory_table(backbone):
    print(f"{backbone}: peak resident memory added by transform (MiB), JPEG files")
    print(f"{'images':>6} {'batch 8':>8} {'batch 32':>9}")
    with tempfile.TemporaryDirectory() as folder:
        for index, image in enumerate(make_images(16)):
            Image.fromarray(image).save(os.path.join(folder, f"{index:02d}.jpg"))
        for n_images in (64, 256, 1024):
            cells = []
            for batch_size in (8, 32):
                out = subprocess.run(
                    [sys.executable, __file__, "--_peak", folder, str(n_images),
                     str(batch_size), backbone],
                    check=True, capture_output=True, text=True).stdout
                cells.append(float(out.split()[-1]))
            print(f"{n_images:>6} {cells[0]:8.0f} {cells[1]:9.0f}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="32 images, 3 repeats (default: 128 images, 5 repeats)")
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "resnet50"],
                        help="torchvision names, 'timm:<name>' (e.g. "
                        "timm:convnext_tiny), or 'hf:vit-small' (a random ViT-S/16 "
                        "saved to a temporary folder)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu",
                        help="cpu or cuda (tuned loop and ours use float16 "
                        "autocast on cuda)")
    parser.add_argument("--compile", action="store_true",
                        help="also time compile=True")
    parser.add_argument("--compiled", action="store_true",
                        help="transform at its defaults vs a compiled, frozen "
                        "loop (see bench_compiled.py)")
    parser.add_argument("--images", type=int, default=None,
                        help="number of images (default: 128, --quick 32)")
    parser.add_argument("--memory", action="store_true",
                        help="peak memory against images and batch size instead")
    parser.add_argument("--_peak", nargs=4, help=argparse.SUPPRESS)
    _report.add_save_argument(parser)
    args = parser.parse_args(argv)
    if args._peak:
        folder, n_images, batch_size, backbone = args._peak
        print(peak_growth(folder, int(n_images), int(batch_size), backbone))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    variant = ("memory" if args.memory else "compiled" if args.compiled else
               "quick" if args.quick else None)
    with _report.report(args.save, device=args.device, variant=variant):
        if args.memory:
            memory_table(args.backbones[0])
        else:
            run(args)


def run(args):
    n_images = args.images or (32 if args.quick else 128)
    args.repeats = 3 if args.quick else 5
    images = make_images(n_images)
    if args.compiled:
        from bench_compiled import compiled_table

        print(f"# {n_images} images 224x224 -> resize 256 / crop 224, batch "
              f"{args.batch_size}, {args.repeats} interleaved repeats, medians "
              "(images/s)")
        with tempfile.TemporaryDirectory() as folder:
            names = [hf_vit_folder(os.path.join(folder, "vit-small"))
                     if name == "hf:vit-small" else name for name in args.backbones]
            compiled_table(names, images, args, reference, fold,
                           labels=args.backbones)
        return
    print(f"# torchvision {torchvision.__version__}; {n_images} images 224x224 "
          f"-> resize 256 / crop 224, batch {args.batch_size}, {args.repeats} "
          "interleaved repeats, medians (images/s)")
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for index, image in enumerate(images):
            path = os.path.join(folder, f"{index:04d}.jpg")
            Image.fromarray(image).save(path, quality=90)
            paths.append(path)
        workers = f"files w{args.num_workers}"
        header = (f"{'backbone':<18} {'eager':>7} {'tuned':>7} {'ours':>7} "
                  f"{'files':>7} {workers:>8} {'ours/eager':>10} "
                  f"{'ours/tuned':>10} {'files/ours':>10} {workers + '/ours':>13}")
        if args.device == "cpu":
            header += (f" {'loop bf16':>9} {'ours bf16':>9} {'bf16/fp32':>9} "
                       f"{'bf16/loop':>9}")
        print(header)
        for name in args.backbones:
            label = name
            if name == "hf:vit-small":
                name = hf_vit_folder(os.path.join(folder, "vit-small"))
            rate = bench_backbone(name, images, paths, args)
            line = (f"{label:<18} {rate['eager']:7.1f} {rate['tuned']:7.1f} "
                    f"{rate['ours']:7.1f} {rate['files']:7.1f} "
                    f"{rate['files wN']:8.1f} "
                    f"{rate['ours'] / rate['eager']:10.2f} "
                    f"{rate['ours'] / rate['tuned']:10.2f} "
                    f"{rate['files'] / rate['ours']:10.2f} "
                    f"{rate['files wN'] / rate['ours']:13.2f}")
            if "ours bf16" in rate:
                line += (f" {rate['loop bf16']:9.1f} {rate['ours bf16']:9.1f} "
                         f"{rate['ours bf16'] / rate['ours']:9.2f} "
                         f"{rate['ours bf16'] / rate['loop bf16']:9.2f}")
            if "ours+compile" in rate:
                line += f"  compile: {rate['ours+compile']:.1f} img/s"
            print(line, flush=True)


if __name__ == "__main__":
    main()
