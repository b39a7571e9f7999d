"""``python -m sklearn_replearn extract``: output checks, atomic all-or-nothing
writes, file names of any kind, unreadable images, seeds and CSV precision."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sklearn_replearn._extract import main as extract_main
from sklearn_replearn._extract import read_path_list

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = ["--backbone", "resnet18", "--weights", "none", "--random-state", "0",
        "--image-size", "32", "--batch-size", "2", "--device", "cpu", "--quiet"]


@pytest.fixture
def images(tmp_path):
    """A folder of three small PNGs, one of them with a newline in its name."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.RandomState(0)
    for name in ["a.png", "b\nc.png", "d.png"]:
        Image.fromarray(rng.randint(0, 256, (20, 24, 3), np.uint8)).save(
            folder / name)
    return folder


@pytest.mark.parametrize("arguments, message", [
    (["--out", "features.txt", "photos"], "must end in .npy or .csv"),
    (["--image-size", "1", "photos"], "must be at least 2"),
    (["no-such-folder"], "is neither an image file nor a folder"),
])
def test_bad_arguments_are_answered_before_torch_loads(tmp_path, arguments,
                                                       message):
    # A fresh interpreter: a usage error must not wait seconds for torch.
    code = ("import sys\n"
            "from sklearn_replearn.__main__ import main\n"
            "try:\n"
            f"    main(['extract', *{arguments!r}])\n"
            "except SystemExit as stop:\n"
            "    print('exit', stop.code, 'torch' in sys.modules)\n")
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "photos" / "a.png")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert message in result.stderr
    assert result.stdout.split() == ["exit", "2", "False"]


def test_path_list_survives_newlines_and_rows_match(images, tmp_path):
    out = tmp_path / "features.npy"
    assert extract_main([str(images), *FAST, "--out", str(out)]) == 0
    X = np.load(out)
    paths = read_path_list(tmp_path / "features.paths.jsonl")
    assert [os.path.basename(p) for p in paths] == ["a.png", "b\nc.png", "d.png"]
    assert X.shape == (3, 512)


@pytest.mark.slow
def test_random_weights_are_reproducible_with_random_state(images, tmp_path):
    first, second = tmp_path / "1.npy", tmp_path / "2.npy"
    extract_main([str(images), *FAST, "--out", str(first)])
    extract_main([str(images), *FAST, "--out", str(second)])
    np.testing.assert_array_equal(np.load(first), np.load(second))


@pytest.mark.slow
def test_csv_values_round_trip_to_float32_exactly(images, tmp_path, capsys):
    extract_main([str(images), *FAST, "--out", str(tmp_path / "f.npy")])
    expected = np.load(tmp_path / "f.npy")
    extract_main([str(images), *FAST, "--out", str(tmp_path / "f.csv")])
    with open(tmp_path / "f.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][:2] == ["path", "feature0"] and len(rows) == 4
    assert [os.path.basename(row[0]) for row in rows[1:]] == ["a.png", "b\nc.png",
                                                               "d.png"]
    values = np.array([row[1:] for row in rows[1:]], dtype=np.float64)
    np.testing.assert_array_equal(values.astype(np.float32), expected)
    assert "f.csv" in capsys.readouterr().err


def test_upper_case_extension_is_written_and_reported_as_given(images, tmp_path,
                                                                capsys):
    out = tmp_path / "F.NPY"
    extract_main([str(images), *FAST, "--out", str(out)])
    assert out.is_file() and not (tmp_path / "F.NPY.npy").exists()
    assert np.load(out).shape == (3, 512)
    assert f"to {out}," in capsys.readouterr().err


def test_output_folder_is_checked_before_any_feature_is_computed(images, tmp_path,
                                                                  capsys):
    # A missing weights file would fail fit: the output error must come first.
    args = [str(images), "--weights", str(tmp_path / "missing.pth")]
    with pytest.raises(SystemExit) as exit_info:
        extract_main([*args, "--out", str(tmp_path / "nowhere" / "f.npy")])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert "nowhere" in err and "does not exist" in err and "missing.pth" not in err
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):  # root may write anywhere
            with pytest.raises(SystemExit):
                extract_main([*args, "--out", str(locked / "f.npy")])
            assert "not writable" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)


def test_a_directory_in_the_way_writes_nothing(images, tmp_path, capsys):
    out = tmp_path / "f.npy"
    (tmp_path / "f.paths.jsonl").mkdir()
    with pytest.raises(SystemExit):
        extract_main([str(images), *FAST, "--out", str(out)])
    assert "is a directory" in capsys.readouterr().err
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["f.paths.jsonl", "images"]


def test_a_failed_rename_restores_the_previous_outputs(images, tmp_path,
                                                       monkeypatch):
    out = tmp_path / "f.npy"
    extract_main([str(images), *FAST, "--out", str(out)])
    before = out.read_bytes(), (tmp_path / "f.paths.jsonl").read_bytes()
    real_replace = os.replace

    def failing_replace(source, target):
        # The new path list cannot be moved in (putting the old one back can).
        if str(target).endswith(".paths.jsonl") and str(source).endswith(".tmp"):
            raise OSError("disk full")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(SystemExit):
        extract_main([str(images / "a.png"), *FAST, "--out", str(out)])
    monkeypatch.undo()
    assert (out.read_bytes(), (tmp_path / "f.paths.jsonl").read_bytes()) == before
    assert sorted(os.listdir(tmp_path)) == ["f.npy", "f.paths.jsonl", "images"]


def test_unreadable_images_fail_the_run_unless_skipped(images, tmp_path, capsys):
    (images / "broken.png").write_text("not a png")
    out = tmp_path / "f.npy"
    with pytest.raises(SystemExit):
        extract_main([str(images), *FAST, "--out", str(out)])
    err = capsys.readouterr().err
    assert "broken.png" in err and "--skip-unreadable" in err
    assert not out.exists()
    assert extract_main([str(images), *FAST, "--skip-unreadable",
                         "--out", str(out)]) == 0
    assert "broken.png" in capsys.readouterr().err
    assert np.load(out).shape == (3, 512)
    assert len(read_path_list(tmp_path / "f.paths.jsonl")) == 3
    skipped = read_path_list(tmp_path / "f.skipped.jsonl")
    assert [os.path.basename(item["path"]) for item in skipped] == ["broken.png"]
    assert skipped[0]["error"]


# ---------------------------------------------------------- a 16-bit PNG
def _status(argv):
    """Exit status of the extract command (it exits through argparse on errors)."""
    try:
        return extract_main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.slow
def test_extract_names_the_file_of_a_16_bit_png_and_can_skip_it(tmp_path, capsys):
    # A 16-bit PNG failed the whole run with "X[1] is a PIL image in mode
    # 'I;16' ...": no path named, and --skip-unreadable did not skip it.
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.RandomState(0)
    Image.fromarray(rng.randint(0, 256, (20, 24, 3), np.uint8)).save(folder / "a.png")
    deep = folder / "b16.png"
    Image.fromarray((rng.rand(20, 24) * 60000).astype(np.uint16)).save(deep)
    assert Image.open(deep).mode == "I;16"
    out = tmp_path / "features.npy"
    assert _status([str(folder), *FAST, "--out", str(out)]) != 0
    assert "b16.png" in capsys.readouterr().err
    assert _status([str(folder), *FAST, "--skip-unreadable", "--out", str(out)]) == 0
    assert np.load(out).shape == (1, 512)
