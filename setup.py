"""pip build of mast3r_ros: Python code + ROS 2 interfaces (msg/, srv/) built with CMake/rosidl.

``pip install --no-build-isolation .`` (inside a venv that has the ROS 2 wheels of
requirements-ros.txt) configures CMakeLists.txt against the venv, builds the generated message
code, stages ``cmake --install`` with DESTDIR, and puts the result into the wheel: the Python part
(``mast3r_ros/msg``, ``mast3r_ros/srv``, type support extensions) into the package, everything else
(``lib/*.so``, ``lib/mast3r_ros/<node>``, ``share/mast3r_ros``, the ament index) as data files
under the venv prefix. pip therefore records and uninstalls every file. On a robot with apt ROS 2,
build with ``colcon build`` instead (package.xml declares ament_cmake).

Set ``MAST3R_ROS_SKIP_INTERFACES=1`` to install the pure-Python code only (no CMake, no messages).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from setuptools import Distribution, find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
NAME = "mast3r_ros"


def _skip_interfaces() -> bool:
    return os.environ.get("MAST3R_ROS_SKIP_INTERFACES", "") not in ("", "0")


class BinaryDistribution(Distribution):
    """Marks the wheel as platform specific (it holds compiled type support libraries)."""

    def has_ext_modules(self) -> bool:  # noqa: D102
        return not _skip_interfaces()


class BuildPyWithInterfaces(build_py):
    """build_py that also builds the ROS interfaces with CMake and stages them into the wheel."""

    def run(self) -> None:
        super().run()
        if _skip_interfaces():
            return
        staged = self._cmake_build_and_stage()
        self._collect(staged)

    def _cmake_build_and_stage(self) -> Path:
        prefix = Path(sys.prefix).resolve()
        key = hashlib.sha1(f"{prefix}|{sys.executable}".encode()).hexdigest()[:10]
        build_dir = ROOT / "build" / f"cmake-{key}"
        stage = ROOT / "build" / f"stage-{key}"
        shutil.rmtree(stage, ignore_errors=True)
        subprocess.run([sys.executable, str(ROOT / "tools" / "fix_ros_cmake_paths.py"),
                        "--prefix", str(prefix)], check=True)
        cmake = shutil.which("cmake")
        if cmake is None:
            raise SystemExit("cmake not found: install it (Debian: apt-get install -y cmake g++) "
                             "or run tools/setup.sh")
        configure = [cmake, "-S", str(ROOT), "-B", str(build_dir),
                     f"-DCMAKE_INSTALL_PREFIX={prefix}", f"-DCMAKE_PREFIX_PATH={prefix}",
                     f"-DPython3_EXECUTABLE={sys.executable}",
                     f"-DMAST3R_ROS_NODE_PYTHON={sys.executable}",
                     "-DBUILD_TESTING=OFF", "-DCMAKE_BUILD_TYPE=Release"]
        subprocess.run(configure, check=True)
        jobs = str(max(1, os.cpu_count() or 1))
        subprocess.run([cmake, "--build", str(build_dir), "--parallel", jobs], check=True)
        env = dict(os.environ, DESTDIR=str(stage))
        subprocess.run([cmake, "--install", str(build_dir)], check=True, env=env)
        return stage / prefix.relative_to(prefix.anchor)

    def _collect(self, staged: Path) -> None:
        """Copy the staged Python package into build_lib; register the rest as data files."""
        site_vars = {"base": "", "platbase": ""}
        rel_site = Path(sysconfig.get_path("platlib", vars=site_vars).lstrip("/"))
        site = staged / rel_site
        data: dict[str, list[str]] = {}
        for path in sorted(p for p in staged.rglob("*") if p.is_file() or p.is_symlink()):
            rel = path.relative_to(staged)
            if site in path.parents:
                in_site = path.relative_to(site)
                if in_site.parts[0] != NAME or path.suffix == ".c":  # egg-info, generated C
                    continue
                target = Path(self.build_lib) / in_site
                if (ROOT / in_site).is_file():  # hand-written modules: setuptools copied them
                    continue  # (generated ones are overwritten: a stale build/lib keeps old msgs)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
            else:
                data.setdefault(str(rel.parent), []).append(str(path))
        self.distribution.data_files = sorted(data.items())


setup(
    name=NAME,
    version="0.1.0",
    description="Camera relocalization in a prior map with MASt3R, for ROS 2",
    python_requires=">=3.10",
    packages=find_packages(include=[NAME, f"{NAME}.*"]),
    package_data={NAME: ["py.typed"]},
    entry_points={"console_scripts": ["mast3r-ros = mast3r_ros.cli:main"]},
    cmdclass={"build_py": BuildPyWithInterfaces},
    distclass=BinaryDistribution,
    zip_safe=False,
)
