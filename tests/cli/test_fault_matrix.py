"""The fault matrix of issue 9 (a new user's audit): each row is one mistake or one damaged input, run
through the real command line in a subprocess, as a user would meet it.

Every row must end with exit status 2, no traceback, exactly one error line on stderr that names the file
or setting at fault and the fix, and nothing the user had lost or left half-made: every file that was
there before is unchanged, and no file or folder appears that the row does not allow.

To add an item: write a `setup(home) -> Case` function that makes the user's files under `home` and
returns the command line and the words the message must contain, and add a `Fault` row to FAULTS."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from deepem.data.images import BINARIZED_MNIST_SHA256, CALTECH_SHA256

TIMEOUT_S = 120


@dataclass
class Case:
    args: list[str]  # after `deepem`
    expect: list[str]  # substrings of the one error line
    env: dict[str, str] = field(default_factory=dict)
    may_create: set[str] = field(default_factory=set)  # paths (relative to home) the run may add


@dataclass(frozen=True)
class Fault:
    item: int  # the item number in issue 9
    name: str
    setup: Callable[[Path], Case]


# ---- helpers that make the user's files ---------------------------------------------------------------

def _dead_url() -> str:
    """A localhost port nobody listens on (bound, then released): connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def _tiny_npz(keys: tuple[str, ...] = ("train", "valid", "test")) -> bytes:
    """An uncompressed .npz whose array bytes are all 0xAB, so that flipping one of them is a CRC error."""
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.full((4, 98), 0xAB, dtype=np.uint8) for k in keys})
    return buffer.getvalue()


def _train(dataset: str, data: Path) -> list[str]:
    return ["train", "--dataset", dataset, "--data-dir", str(data), "--out", "runs/x", "--epochs", "1",
            "--quiet"]


def _damaged_npz(filename: str, dataset: str, sha256: str, damage: Callable[[bytes], bytes],
                 reason: str = "") -> Callable[[Path], Case]:
    def setup(home: Path) -> Case:
        path = home / "data" / filename
        path.parent.mkdir()
        path.write_bytes(damage(_tiny_npz()))
        return Case(_train(dataset, home / "data"), [str(path), "is damaged", reason, sha256, "replace it"])
    return setup


def _truncated(raw: bytes) -> bytes:
    return raw[: len(raw) // 2]


def _flipped_byte(raw: bytes) -> bytes:
    i = raw.index(bytes([0xAB]) * 98)  # inside the first array's data: the zip member's CRC no longer matches
    return raw[:i] + b"\x00" + raw[i + 1:]


def _csv(lines: list[str], expect: list[str]) -> Callable[[Path], Case]:
    def setup(home: Path) -> Case:
        path = home / "data" / "uci" / "banknote_authentication.csv"
        path.parent.mkdir(parents=True)
        path.write_text("\n".join(lines) + "\n")
        return Case(_train("banknote", home / "data"), [str(path), *expect])
    return setup


BANKNOTE = ["variance,skewness,curtosis,entropy,class", "3.6216,8.6661,-2.8073,-0.44699,0",
            "4.5459,8.1674,-2.4586,-1.4621,0", "3.866,-2.6383,1.9242,0.10645,0", "-1.3971,3.3191,-1.3927,-1.9948,1"]


def _offline(dataset: str, env_var: str) -> Callable[[Path], Case]:
    def setup(home: Path) -> Case:
        (home / "data").mkdir()
        dead = _dead_url()
        # Every URL, the pinned mirrors included, goes through a proxy that refuses: never the internet.
        env = {env_var: dead, "http_proxy": dead, "https_proxy": dead, "HTTP_PROXY": dead, "HTTPS_PROXY": dead,
               "no_proxy": "", "NO_PROXY": ""}
        dest = home / "data" / dataset / "train-images-idx3-ubyte.gz"
        return Case(_train(dataset, home / "data"), ["could not download", repr(dataset), dead, str(dest),
                                                     "by hand", "sha256"], env=env)
    return setup


FAULTS = [
    Fault(1, "npz-truncated", _damaged_npz("binarized_mnist.npz", "binarized-mnist", BINARIZED_MNIST_SHA256,
                                           _truncated)),
    Fault(1, "npz-empty", _damaged_npz("binarized_mnist.npz", "binarized-mnist", BINARIZED_MNIST_SHA256,
                                       lambda raw: b"", reason="empty, 0 bytes")),
    Fault(1, "npz-bad-crc", _damaged_npz("binarized_mnist.npz", "binarized-mnist", BINARIZED_MNIST_SHA256,
                                         _flipped_byte, reason="Bad CRC-32")),
    Fault(1, "caltech-truncated", _damaged_npz("caltech101_silhouettes_28.npz", "caltech101", CALTECH_SHA256,
                                               _truncated)),
    Fault(2, "csv-non-numeric", _csv([*BANKNOTE[:3], "3.866,abc,1.9242,0.10645,0", *BANKNOTE[4:]],
                                     ["line 4, column 2 (skewness)", "'abc' is not a number", "fix or delete"])),
    Fault(2, "csv-empty-cell", _csv([*BANKNOTE[:2], "4.5459,8.1674,-2.4586,-1.4621,", *BANKNOTE[3:]],
                                    ["line 3, column 5 (class) is empty", "fix or delete"])),
    Fault(6, "mnist-offline", _offline("mnist", "DEEPEM_MNIST_URL")),
    Fault(6, "fashion-mnist-offline", _offline("fashion-mnist", "DEEPEM_FASHION_MNIST_URL")),
]


# ---- the check every row goes through -------------------------------------------------------------------

def snapshot(root: Path) -> dict[str, str]:
    """Every path under root -> sha256 of a file's bytes, or 'dir'."""
    return {str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


def run_cli(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    full_env.update(DEEPEM_DATA=str(cwd / "data"), **env)
    return subprocess.run([sys.executable, "-m", "deepem.cli", *args], cwd=cwd, env=full_env, text=True,
                          capture_output=True, timeout=TIMEOUT_S)


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f"item{f.item}-{f.name}")
def test_fault_gives_one_clear_line_and_loses_nothing(fault: Fault, tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    case = fault.setup(home)
    before = snapshot(home)
    result = run_cli(case.args, home, case.env)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, result.stderr
    for word in case.expect:
        assert word in errors[0], f"{word!r} missing from: {errors[0]}"
    after = snapshot(home)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing the user had changed
    assert set(after) - set(before) <= case.may_create  # nothing half-made left behind
