"""Fuzz: randomly corrupted copies of real small maps (schema 2 of both feature kinds, schema 1 of
the stores before it) give only typed MapErrors, never another exception and never a hang.

A seeded generator (case i uses seed i, so a failure names a reproducible case) applies one to
three mutations per copy: truncations, bit flips, appended junk, deleted files, FIFOs / links /
directories in place of files, hostile CURRENT contents, and hostile SQLite values (strings, blobs,
huge or negative numbers, deep JSON, dropped tables, a recursive view in place of a table),
with or without the row digests recomputed. When a schema-2 copy still loads and its digests were
not recomputed, the data must be exactly the original (integrity: never silently wrong data).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from map_fixtures import (
    FIXTURES,
    TABLE_COLUMNS,
    assert_same_map,
    demo_map,
    edit_extent,
    edit_index,
    packed_extents,
    version_dir,
)
from test_map_store_hostile import deadline, read_everything

from mast3r_ros.core.errors import MapError
from mast3r_ros.core.map import load_map, save_map

CASES = 300
_V1_COLUMNS = {"meta": ("key", "value"),
               "keyframes": ("id", "idx", "width", "height", "K", "T_map_cam", "stamp",
                             "has_depth", "has_pointmap", "has_features")}


def _hostile_value(rng: np.random.Generator) -> object:
    choices = [
        lambda: "x" * int(rng.integers(0, 100)), lambda: "[" * 50_000 + "]" * 50_000,
        lambda: rng.bytes(int(rng.integers(0, 200))), lambda: 2**62, lambda: -1, lambda: 0,
        lambda: float(rng.normal()), lambda: 1e308, lambda: "1,2,3", lambda: '["a"]',
        lambda: "NaN", lambda: 10**9, lambda: "<f4", lambda: "v-" + "0" * 32]
    return choices[int(rng.integers(len(choices)))]()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def _regular(p: Path) -> bool:
    return p.is_file() and not p.is_symlink()


def _mutate_sql(case: Path, rng: np.random.Generator, v1: bool) -> str:
    if not _regular(case / "CURRENT"):
        return "sql:skipped"  # opening a FIFO here would block the test itself
    db = version_dir(case) / ("map.sqlite" if v1 else "index.sqlite")
    if not _regular(db):
        return "sql:skipped"
    tables = _V1_COLUMNS if v1 else {t: c[:-1] for t, c in TABLE_COLUMNS.items()}
    table = list(tables)[int(rng.integers(len(tables)))]
    if rng.random() < 0.08:
        sql = f"DROP TABLE {table}"
        if rng.random() < 0.5:
            sql += (f"; CREATE VIEW {table} AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
                    "SELECT x + 1 FROM c) SELECT * FROM c")
        con = sqlite3.connect(db)
        con.executescript(sql)
        con.close()
        return f"sql:{sql[:30]}"
    col = tables[table][int(rng.integers(len(tables[table])))]
    value = _hostile_value(rng)
    sql = f"UPDATE {table} SET {col} = ? WHERE rowid = (SELECT rowid FROM {table} " \
          "ORDER BY random() LIMIT 1)"
    rehash = not v1 and rng.random() < 0.5
    try:
        if v1:
            con = sqlite3.connect(db)
            with con:
                con.execute(sql, (value,))
            con.close()
        else:
            edit_index(case, sql, (value,), rehash=rehash)
    except sqlite3.IntegrityError:
        return "sql:constraint"
    return f"sql{'+rehash' if rehash else ''}:{table}.{col}"


def _mutate_extent(case: Path, rng: np.random.Generator) -> str:
    """A random field of a random packed array record set to a random value."""
    if not _regular(case / "CURRENT") or not _regular(version_dir(case) / "index.sqlite"):
        return "extent:skipped"
    con = sqlite3.connect(version_dir(case) / "index.sqlite")
    ids = [r[0] for r in con.execute("SELECT id FROM keyframes")]
    con.close()
    kid = ids[int(rng.integers(len(ids)))]
    recs = packed_extents(case, kid)
    if len(recs) == 0:
        return "extent:empty"
    field = ["name", "offset", "nbytes", "dtype", "rank", "shape", "sha256"][int(rng.integers(7))]
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    value = {"name": lambda: pick([b"rgb", b"desc", b"f.xy", b"f.tokens", rng.bytes(8)]),
             "offset": lambda: int(rng.integers(0, 2**63)),
             "nbytes": lambda: int(rng.integers(0, 2**40)),
             "dtype": lambda: pick([b"<f8", b"|u1", b"<f2", b"|O", b"<c8"]),
             "rank": lambda: int(rng.integers(0, 256)),
             "shape": lambda: rng.integers(0, 2**32, 4, dtype=np.uint64).astype(np.uint32),
             "sha256": lambda: rng.bytes(32)}[field]()
    rehash = rng.random() < 0.5
    edit_extent(case, kid, recs[int(rng.integers(len(recs)))]["name"].decode(), rehash=rehash,
                **({"shape": tuple(int(v) for v in value)} if field == "shape" else {field: value}))
    return f"extent{'+rehash' if rehash else ''}:{field}"


def _mutate(case: Path, rng: np.random.Generator, v1: bool) -> str:
    kind = ["truncate", "flip", "junk", "delete", "nonregular", "current", "sql", "sql",
            "sql" if v1 else "extent"][int(rng.integers(9))]
    if kind == "extent":
        return _mutate_extent(case, rng)
    files = [p for p in _files(case) if p.name != ".lock"]
    target = files[int(rng.integers(len(files)))]
    if kind == "truncate":
        os.truncate(target, int(rng.integers(0, max(1, target.stat().st_size))))
    elif kind == "flip":
        raw = bytearray(target.read_bytes())
        for _ in range(int(rng.integers(1, 9))):
            if raw:
                raw[int(rng.integers(len(raw)))] ^= 1 << int(rng.integers(8))
        target.write_bytes(bytes(raw))
    elif kind == "junk":
        with open(target, "ab") as f:
            f.write(rng.bytes(int(rng.integers(1, 5000))))
    elif kind == "delete":
        victim = target.parent if rng.random() < 0.2 else target
        shutil.rmtree(victim) if victim.is_dir() else victim.unlink()
    elif kind == "nonregular":
        target.unlink()
        how = int(rng.integers(4))
        if how == 0:
            os.mkfifo(target)
        elif how == 1:
            target.symlink_to("/dev/zero")
        elif how == 2:
            target.symlink_to(files[0])
        else:
            target.mkdir()
    elif kind == "current":
        if os.path.lexists(case / "CURRENT") and not _regular(case / "CURRENT"):
            (case / "CURRENT").rmdir() if (case / "CURRENT").is_dir() else \
                (case / "CURRENT").unlink()
        (case / "CURRENT").write_bytes([b"/etc/passwd", b"../x", rng.bytes(40), b"",
                                        b"v-" + b"f" * 32][int(rng.integers(5))])
    else:
        return _mutate_sql(case, rng, v1)
    return f"{kind}:{target.relative_to(case)}"


def _safe_mutate(case: Path, rng: np.random.Generator, v1: bool) -> str:
    """One mutation; an earlier one may have broken what this one edits (then it does less)."""
    try:
        return _mutate(case, rng, v1)
    except (sqlite3.Error, OSError, ValueError) as exc:
        return f"partial:{type(exc).__name__}"


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzz-bases")
    out = {}
    for enc in ("sift", "mast3r"):
        save_map(demo_map(3, enc, pointmap_ids=(1,)), root / enc)
        out[enc] = root / enc
    for name in ("v1_sift", "v1_mast3r", "v1t_sift", "v1t_mast3r"):
        out[name] = FIXTURES / name
    return out


def test_fuzzed_maps_give_only_typed_errors(tmp_path, bases) -> None:
    originals = {name: load_map(p) for name, p in bases.items()}
    names = sorted(bases)
    outcomes: Counter = Counter()
    t0 = time.monotonic()
    for i in range(CASES):
        rng = np.random.default_rng(i)
        name = names[i % len(names)]
        case = tmp_path / f"case{i}"
        shutil.copytree(bases[name], case, symlinks=True)
        v1 = name.startswith("v1")
        what = [_safe_mutate(case, rng, v1) for _ in range(int(rng.integers(1, 4)))]
        try:
            with deadline(10):
                read_everything(case)
                loaded = load_map(case)
        except MapError:
            outcomes["typed error"] += 1
        except BaseException as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"case {i} ({name}: {what}) raised {type(exc).__name__}: {exc}")
        else:
            outcomes["loaded"] += 1
            if not v1 and not any("rehash" in w for w in what):
                try:
                    assert_same_map(originals[name], loaded)
                except AssertionError as exc:
                    pytest.fail(f"case {i} ({name}: {what}) loaded different data: {exc}")
        shutil.rmtree(case, ignore_errors=True)
    assert outcomes["typed error"] > CASES // 2, outcomes
    assert time.monotonic() - t0 < 120
