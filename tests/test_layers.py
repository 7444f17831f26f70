"""The core package never imports Airflow: it is what the worker image runs."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import importlib, pkgutil, sys

class NoAirflow:
    def find_spec(self, name, path=None, target=None):
        if name == "airflow" or name.startswith("airflow."):
            raise ImportError(f"the core imported {name}")

sys.meta_path.insert(0, NoAirflow())
import codybatch
names = [m.name for m in pkgutil.walk_packages(codybatch.__path__, "codybatch.")
         if not m.name.startswith("codybatch.airflow") and m.name != "codybatch.__main__"]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def test_every_core_module_imports_without_airflow() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 20  # the probe really walked the package


def test_the_probe_catches_an_airflow_import() -> None:
    bad = PROBE.replace("import codybatch\n", "import codybatch\nimport airflow.sdk\n", 1)
    done = subprocess.run([sys.executable, "-c", bad], capture_output=True, text=True)
    assert done.returncode != 0 and "the core imported airflow" in done.stderr
