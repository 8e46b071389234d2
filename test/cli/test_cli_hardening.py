"""Every CLI failure is one line on stderr and a non-zero status, never a traceback: decompression
bombs and cv2.error (D3, D11), OSError on write (D11), empty input (D16), numeric arguments
(D17), bad command lines and unexpected bugs."""

from __future__ import annotations

import re
import struct
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from cli_helpers import json_lines, run_cli

import mast3r_ros.cli.localize as localize_cmd
from mast3r_ros.cli import main
from mast3r_ros.core.config import InputConfig

LIMIT = InputConfig().max_image_pixels


def _png(width: int, height: int, idat: bytes | None = None) -> bytes:
    """A 1-bit grey PNG; all-zero rows compress ~1000:1 (a decompression bomb)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload)))

    if idat is None:
        comp = zlib.compressobj(9)
        row = b"\0" * (1 + (width + 7) // 8)
        idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def _one_line(err: str) -> str:
    """The one error line of stderr; every other line is a log record or a progress bar."""
    lines = [ln for ln in err.replace("\r", "\n").splitlines()
             if ln.strip() and not re.search(r"\d+%\|", ln)]
    assert "Traceback" not in err, err[-3000:]
    assert all(ln.startswith(("INFO ", "WARNING ", "ERROR ", "mast3r-ros")) for ln in lines), err
    errors = [ln for ln in lines if ln.startswith("ERROR ") or ": error: " in ln]
    assert len(errors) == 1, err[-3000:]
    return errors[0]


@pytest.fixture()
def seven(data_dir: Path) -> Path:
    return data_dir / "sevenscenes_redkitchen_rgbd"


# ------------------------------------------------------------------------------------ D3 / D11
def test_d3_localize_refuses_a_bomb_by_its_header(sift_map: Path, seven: Path, tmp_path: Path,
                                                  capsys) -> None:
    """D3: an 8 kB PNG of 8192x8192 pixels is refused from its header, with the reason in the
    image's JSON line; the other images are still localized."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png(8192, 8192))
    good = seven / "query" / "frame-000170.color.jpg"
    rc = main(["localize", str(sift_map), str(bomb), str(good), "--backend", "sift",
               "--intrinsics", str(seven / "color-intrinsics.txt")])
    out = json_lines(capsys.readouterr().out)
    assert rc == 1 and [r["success"] for r in out] == [False, True]
    assert f"8192x8192 pixels exceeds the limit of {LIMIT} pixels" in out[0]["reason"]


def test_d11_cv2_error_is_a_reason_not_a_traceback(sift_map: Path, seven: Path, tmp_path: Path,
                                                   capsys) -> None:
    """D11: above 2^30 pixels OpenCV raised cv2.error out of the CLI."""
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png(32769, 32768, idat=zlib.compress(b"\0" * 100)))
    rc = main(["localize", str(sift_map), str(huge), "--backend", "sift",
               "--intrinsics", str(seven / "color-intrinsics.txt")])
    out = json_lines(capsys.readouterr().out)
    assert rc == 1 and not out[0]["success"] and "exceeds the limit" in out[0]["reason"]


def test_d3_match_checks_images_before_the_model(tmp_path: Path, tiny_checkpoint: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png(8192, 8192))
    r = run_cli("match", str(bomb), str(bomb), "--checkpoint", str(tiny_checkpoint),
                "--device", "cpu", "--image-size", "64")
    line = _one_line(r.stderr)
    assert r.returncode == 2 and "ImageError" in line and "exceeds the limit" in line


def test_max_image_pixels_option(sift_map: Path, seven: Path, capsys) -> None:
    good = seven / "query" / "frame-000170.color.jpg"
    rc = main(["localize", str(sift_map), str(good), "--backend", "sift",
               "--max-image-pixels", str(640 * 480 - 1)])
    out = json_lines(capsys.readouterr().out)
    assert rc == 1 and "640x480 pixels exceeds the limit of 307199" in out[0]["reason"]


# ------------------------------------------------------------------------------------------ D11
_FSIZE_PROBE = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes beyond the limit fail with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
from mast3r_ros.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_d11_write_failure_is_one_line(seven: Path, tmp_path: Path) -> None:
    """D11: a full file system (simulated with RLIMIT_FSIZE: EFBIG) while writing the map."""
    import subprocess

    from cli_helpers import REPO

    r = subprocess.run([sys.executable, "-c", _FSIZE_PROBE, "map-from-rgbd", str(seven),
                        str(tmp_path / "map"), "--backend", "sift", "--stride", "16"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    line = _one_line(r.stderr)
    assert r.returncode == 2 and "MapError: cannot write the map to" in line, line
    assert "File too large" in line


def test_d11_unwritable_destinations(seven: Path, sift_map: Path, tmp_path: Path) -> None:
    """D11: the map's or eval's destination under a regular file (NotADirectoryError)."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run_cli("map-from-rgbd", str(seven), str(blocker / "map"), "--backend", "sift",
                "--stride", "16")
    assert r.returncode == 2 and "MapError: cannot write the map to" in _one_line(r.stderr)
    r = run_cli("eval", "retrieval", str(seven), "--map", str(sift_map), "--backend", "sift",
                "--every", "20", "--out", str(blocker / "out"))
    assert r.returncode == 2 and "cannot write the results to" in _one_line(r.stderr)


# ------------------------------------------------------------------------------------------ D16
def test_d16_localize_without_images(sift_map: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    r = run_cli("localize", str(sift_map), str(empty), "--backend", "sift")
    line = _one_line(r.stderr)
    assert r.returncode == 2 and "InputError: no images in" in line and r.stdout == ""


# ------------------------------------------------------------------------------------------ D17
@pytest.mark.parametrize("argv, match", [
    (["map-from-rgbd", "{seven}", "{tmp}/m", "--depth-scale", "0"], "depth_scale=0.0 is outside"),
    (["map-from-rgbd", "{seven}", "{tmp}/m", "--depth-scale", "-1000"], "depth_scale=-1000.0"),
    (["map-from-rgbd", "{seven}", "{tmp}/m", "--depth-scale", "inf"], "not a finite number"),
    (["map-from-rgbd", "{seven}", "{tmp}/m", "--stride", "0"], "stride=0 is outside"),
    (["map-from-rgbd", "{seven}", "{tmp}/m", "--max-frames", "-2"], "max_frames=-2 is outside"),
    (["localize", "{tmp}", "{tmp}", "--top-k", "0"], "top_k=0 is outside"),
    (["localize", "{tmp}", "{tmp}", "--K", "0", "500", "320", "240"], "intrinsics are unusable"),
    (["localize", "{tmp}", "{tmp}", "--K", "nan", "500", "320", "240"], "not a finite number"),
    (["localize", "{tmp}", "{tmp}", "--image-size", "2.5"], "invalid _strict_int value"),
    (["eval", "relative", "{tmp}", "--threshold", "0"], "threshold=0.0 is outside"),
    (["eval", "relative", "{tmp}", "--limit", "-1"], "limit=-1 is outside"),
    (["build-map", "{tmp}", "{tmp}/m", "--stride", "0"], "stride=0 is outside"),
    (["match", "a.png", "b.png", "--image-size", "99999"], "image_size=99999 is outside"),
])
def test_d17_numeric_arguments_validated(argv: list[str], match: str, seven: Path,
                                         tmp_path: Path) -> None:
    """D17: --depth-scale 0 built a map of infinite depths; every number is now checked first."""
    r = run_cli(*[a.format(seven=seven, tmp=tmp_path) for a in argv])
    line = _one_line(r.stderr)
    assert r.returncode == 2 and match in line, line
    assert not (tmp_path / "m").exists()


# ------------------------------------------------------------------------------- other failures
def test_bad_command_line_is_one_line() -> None:
    r = run_cli("localize")
    assert r.returncode == 2 and "required: map, images" in _one_line(r.stderr)


def test_unexpected_error_is_one_line_status_3(monkeypatch, caplog) -> None:
    """The last-resort handler of main (the subcommand is made to fail, main is under test)."""
    def broken(args: object) -> int:
        raise RuntimeError("simulated bug\nwith a second line")

    monkeypatch.setattr(localize_cmd, "list_images", broken)
    assert main(["localize", "m", "i.png"]) == 3
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and not errors[0].exc_info
    line = errors[0].getMessage()
    assert "\n" not in line and "this is a bug" in line
    assert "RuntimeError: simulated bug with a second line" in line


def test_fifo_image_refused_without_blocking(sift_map: Path, seven: Path, tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "frame.png"
    os.mkfifo(fifo)
    r = run_cli("localize", str(sift_map), str(fifo), "--backend", "sift", timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "named pipe" in json_lines(r.stdout)[0]["reason"]
    assert [ln for ln in r.stderr.splitlines() if "named pipe" in ln][0].startswith("WARNING")


def test_corrupt_image_is_a_reason(sift_map: Path, tmp_path: Path, capsys) -> None:
    jpg = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
    (tmp_path / "cut.jpg").write_bytes(jpg[:200])
    rc = main(["localize", str(sift_map), str(tmp_path / "cut.jpg"), "--backend", "sift"])
    out = json_lines(capsys.readouterr().out)
    assert rc == 1 and not out[0]["success"] and "cut.jpg" in out[0]["reason"]


def test_fifo_data_files_refused_without_blocking(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "queries_with_gt.txt")
    r = run_cli("eval", "retrieval", str(tmp_path), "--backend", "sift", timeout=120)
    assert r.returncode == 2 and "named pipe" in _one_line(r.stderr)
    (tmp_path / "queries_with_gt.txt").unlink()
    os.mkfifo(tmp_path / "intrinsics.txt")
    r = run_cli("localize", str(tmp_path), str(tmp_path), "--intrinsics",
                str(tmp_path / "intrinsics.txt"), timeout=120)
    assert r.returncode == 2 and "IntrinsicsError" in _one_line(r.stderr)
