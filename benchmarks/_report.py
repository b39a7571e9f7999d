"""The machine header every benchmark prints, and its ``--save`` option.

A benchmark's ratios depend on the machine that measured them (bfloat16 is
fast only on CPUs with AVX512-BF16 or AMX, a shared machine slows every
contender unevenly), so each report starts with the exact command, the date,
the CPU model and its vector flags, torch's version, threads and device, and
the load average, and ends with the load average again::

    parser = argparse.ArgumentParser()
    _report.add_save_argument(parser)
    args = parser.parse_args()
    with _report.report(args.save, device="cpu"):
        print(table)

``--save`` with no path writes a copy of everything printed on standard
output to ``docs/benchmarks/results/<script>.txt``, the file that the
benchmarks page (``docs/benchmarks/index.rst``) includes; ``--save PATH``
writes it to ``PATH`` (a variant's own file). Progress messages on standard
error stay out of it.
"""

import contextlib
import datetime
import os
import platform
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "benchmarks" / "results"
# The instruction sets that decide the ratios: float32 speed (avx2, avx512f)
# and native bfloat16 (avx512_bf16, amx_bf16).
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu():
    """``(model name, set of flags)`` from ``/proc/cpuinfo`` (Linux)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                if flags and key.strip() == "":
                    break  # the first processor's block is enough
    except OSError:
        pass
    return model, flags


def cpu_line():
    """The CPU model, its core count and which of ``FLAGS`` it has."""
    model, flags = cpu()
    marks = ", ".join(f"{name} {'yes' if name in flags else 'no'}"
                      for name in FLAGS)
    native = ("AMX" if "amx_bf16" in flags else
              "AVX512-BF16" if "avx512_bf16" in flags else "none (emulated)")
    return (f"CPU: {model}, {os.cpu_count()} logical CPUs; {marks}; "
            f"native bfloat16: {native}")


def load_average():
    try:
        return "{:.2f}, {:.2f}, {:.2f} (1, 5, 15 min)".format(*os.getloadavg())
    except OSError:
        return "unknown"


def command_line():
    """``python <script> <arguments>``, the script relative to the checkout."""
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(ROOT)
    return " ".join(["python", shlex.quote(str(script))]
                    + [shlex.quote(arg) for arg in sys.argv[1:]])


def add_save_argument(parser):
    """``--save [PATH]``: also write the report to PATH, or without PATH to
    ``docs/benchmarks/results/<script>[-<variant>].txt``."""
    parser.add_argument(
        "--save", nargs="?", const=True, default=None, metavar="PATH",
        help="also write the report to PATH (without PATH: to "
             "docs/benchmarks/results/<script>[-<variant>].txt, which the "
             "benchmarks page includes)")


def save_path(save, variant=None):
    """The file ``--save`` names: ``None``, its PATH, or the default."""
    if save is not True:
        return save
    name = Path(sys.argv[0]).stem + (f"-{variant}" if variant else "")
    return RESULTS / f"{name}.txt"


class _Tee:
    """Standard output that also writes to a file."""

    def __init__(self, stream, file):
        self.stream, self.file = stream, file

    def write(self, text):
        self.file.write(text)
        return self.stream.write(text)

    def flush(self):
        self.file.flush()
        self.stream.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


def code_version():
    """The library's version and the checkout's commit, ``+`` when the
    library's or the benchmarks' tracked files differ from it."""
    import subprocess

    import sklearn_replearn

    def git(*args):
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True,
                              text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        if git("status", "--porcelain", "--untracked-files=no", "--",
               "sklearn_replearn", "benchmarks"):
            commit += "+"
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown commit"
    return f"sklearn-replearn {sklearn_replearn.__version__} ({commit})"


def header(device="cpu", threads=None):
    """The lines that say what ran where (each starting with ``#``)."""
    import torch

    threads = threads or torch.get_num_threads()
    now = datetime.datetime.now(datetime.timezone.utc)
    return "\n".join([
        f"# $ {command_line()}",
        f"# {now:%Y-%m-%d %H:%M} UTC; load average at start {load_average()}",
        f"# {cpu_line()}",
        f"# torch {torch.__version__}, {threads} threads, device {device}; "
        f"python {platform.python_version()}; {code_version()}",
    ])


@contextlib.contextmanager
def report(save=None, device="cpu", threads=None, variant=None):
    """Print the header, run the body, print the load average at the end;
    with ``save`` (``--save``'s value), everything printed to standard output
    goes to that file too (``variant`` names the default file's variant)."""
    stdout, file = sys.stdout, None
    save = save_path(save, variant)
    if save:
        path = Path(save)
        path.parent.mkdir(parents=True, exist_ok=True)
        file = open(path, "w", encoding="utf-8")  # noqa: SIM115 -- closed below
        sys.stdout = _Tee(stdout, file)
    start = time.perf_counter()
    try:
        print(header(device, threads), flush=True)
        yield
        print(f"# {time.perf_counter() - start:.0f} s; load average at end "
              f"{load_average()}", flush=True)
    finally:
        sys.stdout = stdout
        if file is not None:
            file.close()
            print(f"# report written to {save}", file=sys.stderr)
