"""Every code block of the user guide runs.

Each page of ``docs/guide/*.rst`` is read in order: its
``.. code-block:: python`` blocks run one after the other in one fresh
namespace (``__name__ == "__main__"``, so a script's main guard runs), in a
temporary working folder, with matplotlib's non-interactive backend, one
torch thread and one BLAS thread (the examples' tiny models run fastest so;
on a loaded machine two spinning threads per library made them several times
slower). A ``.. code-block:: bash`` block is shell text (an install, a
launcher) and is not run, unless a ``.. guide-test: run`` comment precedes
it: it then runs with ``bash -e`` in the same folder, between the page's
Python blocks. A ``.. guide-test: skip <reason>`` comment before a block
leaves it out (a real GPU, a cluster of machines); the reason is required.

The page checks (labels, block languages, markers, images) are quick; running
the pages is marked ``slow``.
"""

import os
import re
import subprocess
import sys
import textwrap
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guide"
PAGES = ["autoencoder", "vae", "pretrained", "dictionary", "plotting", "scaling",
         "persistence", "extract", "onnx", "performance"]
# Languages a code block may have. Python runs; the others are shown only
# (bash runs when marked).
LANGUAGES = {"python", "bash", "text", "console"}

_DIRECTIVE = re.compile(r"^(?P<indent>\s*)\.\.\s+code-block::\s*(?P<lang>\S*)\s*$")
_MARKER = re.compile(r"^\s*\.\.\s+guide-test:\s*(?P<action>\S+)\s*(?P<reason>.*)$")
# A paragraph ending in "::" starts a literal block without a language.
_LITERAL = re.compile(r"(^|[^:]|\s)::\s*$")


@dataclass
class Block:
    page: str
    number: int  # 1-based, among the page's code blocks
    line: int  # 1-based line of the directive
    language: str
    code: str
    marker: str | None  # "run", "skip" or None
    reason: str


def _indent(line):
    return len(line) - len(line.lstrip())


def parse_blocks(page):
    """The code blocks of ``docs/guide/<page>.rst``, in order."""
    lines = (GUIDE / f"{page}.rst").read_text(encoding="utf-8").splitlines()
    blocks = []
    for i, line in enumerate(lines):
        match = _DIRECTIVE.match(line)
        if not match:
            continue
        indent = len(match["indent"])
        j = i + 1
        # Directive options (":caption: ..."), then the body.
        while j < len(lines) and lines[j].strip().startswith(":") and \
                _indent(lines[j]) > indent:
            j += 1
        body = []
        while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > indent):
            body.append(lines[j])
            j += 1
        marker, reason = None, ""
        previous = [k for k in range(i) if lines[k].strip()]
        if previous:
            found = _MARKER.match(lines[previous[-1]])
            if found:
                marker, reason = found["action"], found["reason"].strip()
        blocks.append(Block(page, len(blocks) + 1, i + 1, match["lang"],
                            textwrap.dedent("\n".join(body)).strip("\n") + "\n",
                            marker, reason))
    return blocks


def _literal_blocks(page):
    """Lines that open a bare ``::`` literal block (no language: never run)."""
    found = []
    for number, line in enumerate(
            (GUIDE / f"{page}.rst").read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith(".."):
            continue  # directives and comments
        if _LITERAL.search(stripped):
            found.append(number)
    return found


# ----------------------------------------------------------- quick checks
def test_every_page_of_the_index_is_checked():
    index = (GUIDE / "index.rst").read_text(encoding="utf-8")
    listed = re.findall(r"^\s{3}(\w+)\s*$", index, flags=re.MULTILINE)
    assert listed == PAGES


@pytest.mark.parametrize("page", PAGES)
def test_page_structure(page):
    text = (GUIDE / f"{page}.rst").read_text(encoding="utf-8")
    assert text.startswith(f".. _guide-{page}:\n"), (
        f"docs/guide/{page}.rst must start with the label '.. _guide-{page}:'")
    assert not _literal_blocks(page), (
        f"docs/guide/{page}.rst lines {_literal_blocks(page)} open '::' literal "
        f"blocks: use '.. code-block:: python' (run by this test) or bash")
    blocks = parse_blocks(page)
    assert any(block.language == "python" for block in blocks)
    for block in blocks:
        where = f"docs/guide/{page}.rst block {block.number} (line {block.line})"
        assert block.language in LANGUAGES, f"{where}: language {block.language!r}"
        assert block.code.strip(), f"{where} is empty"
        assert block.marker in (None, "run", "skip"), f"{where}: {block.marker!r}"
        if block.marker == "skip":
            assert block.reason, f"{where}: '.. guide-test: skip' needs a reason"
        if block.marker == "run":
            assert block.language == "bash", f"{where}: only bash is marked 'run'"
    for image in re.findall(r"^\.\. (?:image|figure)::\s*(\S+)", text,
                            flags=re.MULTILINE):
        assert (GUIDE / image).resolve().is_file(), f"{page}: missing {image}"


def test_the_parser_reads_blocks_and_markers(tmp_path, monkeypatch):
    page = tmp_path / "page.rst"
    page.write_text(textwrap.dedent("""\
        .. _guide-page:

        Text.

        .. code-block:: python
           :caption: one

           x = 1
           if x:
               y = 2

        .. guide-test: skip needs a GPU

        .. code-block:: python

           z = 3
        """), encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "GUIDE", tmp_path)
    first, second = parse_blocks("page")
    assert first.code == "x = 1\nif x:\n    y = 2\n" and first.marker is None
    assert (second.marker, second.reason, second.line) == ("skip", "needs a GPU", 14)


# ------------------------------------------------------------- running
def _run_block(block, namespace, cwd):
    where = (f"docs/guide/{block.page}.rst, code block {block.number} "
             f"(line {block.line})")
    if block.language == "bash":
        env = dict(os.environ)
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
        # One thread per library, as in the test's own process.
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        result = subprocess.run(["bash", "-e", "-c", block.code], cwd=cwd, env=env,
                                capture_output=True, text=True, timeout=300)
        if result.returncode:
            pytest.fail(f"{where} exited with {result.returncode}:\n"
                        f"{result.stdout}\n{result.stderr}", pytrace=False)
        return
    try:
        exec(compile(block.code, where, "exec"), namespace)
    except Exception:
        pytest.fail(f"{where} raised:\n{traceback.format_exc()}\n--- block ---\n"
                    f"{block.code}", pytrace=False)


def _reset_accelerate():
    """Accelerate keeps one process-wide state (mixed precision, device):
    a page's ``Accelerator`` must neither see nor leave another's."""
    try:
        from accelerate.state import AcceleratorState
    except ImportError:
        return
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("page", PAGES)
def test_guide_page_code_runs(page, tmp_path, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scipy.linalg  # noqa: F401  (loads its BLAS before the limit below)
    import torch  # noqa: F401
    from threadpoolctl import threadpool_limits

    import sklearn_replearn  # noqa: F401

    monkeypatch.chdir(tmp_path)
    _reset_accelerate()
    namespace = {"__name__": "__main__"}
    runnable = [block for block in parse_blocks(page) if block.marker != "skip"
                and (block.language == "python" or block.marker == "run")]
    assert runnable, f"docs/guide/{page}.rst has no code block to run"
    try:
        with threadpool_limits(limits=1):
            for block in runnable:
                _run_block(block, namespace, tmp_path)
    finally:
        plt.close("all")
        _reset_accelerate()


def test_a_failing_block_names_its_page_and_number(tmp_path):
    broken = Block("vae", 3, 42, "python", "x = 1 / 0\n", None, "")
    with pytest.raises(pytest.fail.Exception, match=r"vae\.rst, code block 3 "
                       r"\(line 42\)[\s\S]*ZeroDivisionError"):
        _run_block(broken, {}, tmp_path)
    failing_shell = Block("extract", 2, 7, "bash", "exit 3\n", "run", "")
    with pytest.raises(pytest.fail.Exception, match="code block 2 .* exited with 3"):
        _run_block(failing_shell, {}, tmp_path)
