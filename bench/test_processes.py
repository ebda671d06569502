"""How many tests start a fresh Python process, and how many of those processes load TensorFlow.

Runs pytest (the arguments after `--` go to it) with a `sitecustomize` module on PYTHONPATH that every Python
process of the session loads: it logs each process's start with the test under way (pytest's PYTEST_CURRENT_TEST,
which the processes a test starts inherit), and the moment a process imports TensorFlow. Processes whose
environment drops PYTHONPATH are not seen.

    .venv/bin/python bench/test_processes.py -- -m "not slow" -q

Its last line is one JSON object: the tests that started processes, the processes, those that loaded TensorFlow,
and the tests that started the most.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Loaded by every Python process of the session: one JSON line at start, one when TensorFlow is first imported.
HOOK = r"""
import json, os, sys

def _log(event):
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
    with open(os.environ["MNIST_GAN_PROCESS_LOG"], "a") as log:
        log.write(json.dumps({"pid": os.getpid(), "event": event, "test": test}) + "\n")

class _TensorFlowWatch:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow":
            sys.meta_path.remove(self)
            _log("tensorflow")
        return None

if os.environ.get("MNIST_GAN_PROCESS_LOG"):
    _log("start")
    sys.meta_path.insert(0, _TensorFlowWatch())
"""


def count(log: Path) -> dict:
    started: dict[int, str] = {}
    tensorflow: set[int] = set()
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if record["event"] == "start":
            started[record["pid"]] = record["test"]
        else:
            tensorflow.add(record["pid"])
    by_test = collections.Counter(test for test in started.values() if test)  # "": pytest and its workers
    tf_by_test = collections.Counter(started[pid] for pid in tensorflow if started.get(pid))
    return {
        "tests_starting_processes": len(by_test),
        "processes_started_by_tests": sum(by_test.values()),
        "of_which_load_tensorflow": sum(tf_by_test.values()),
        "tests_starting_tensorflow_processes": len(tf_by_test),
        "pytest_and_worker_processes": sum(1 for test in started.values() if not test),
        "most_processes": dict(by_test.most_common(10)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pytest_args", nargs="*", help="arguments for pytest, after --")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="process-count-") as folder:
        Path(folder, "sitecustomize.py").write_text(HOOK)
        log = Path(folder, "processes.jsonl")
        log.touch()
        path = os.pathsep.join(filter(None, [folder, os.environ.get("PYTHONPATH")]))
        environment = os.environ | {"PYTHONPATH": path, "MNIST_GAN_PROCESS_LOG": str(log)}
        tests = subprocess.run([sys.executable, "-m", "pytest", *args.pytest_args], env=environment)
        print(json.dumps(count(log) | {"pytest_exit_code": tests.returncode}))
    return tests.returncode


if __name__ == "__main__":
    sys.exit(main())
