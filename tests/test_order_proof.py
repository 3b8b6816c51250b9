"""The suite's order-proofing (issue 12): conftest's per-test guard, checked on a probe suite."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

PROBE = """
import os

import torch


def test_a_leaks_threads():
    torch.set_num_threads(3)


def test_b_starts_from_one_thread_and_the_same_global_rng():
    assert torch.get_num_threads() == 1
    first = torch.randn(2)
    torch.manual_seed(0)
    assert torch.equal(first, torch.randn(2))


def test_c_leaks_dtype_cwd_and_a_switch(tmp_path):
    os.environ["SMOOTHLAB_NATIVE"] = "0"
    torch.set_default_dtype(torch.float64)
    os.chdir(tmp_path)


def test_d_inherits_none_of_it():
    assert "SMOOTHLAB_NATIVE" not in os.environ
    assert torch.get_default_dtype() == torch.float32
    assert os.getcwd() == START
"""


def test_a_leak_fails_its_own_test_and_not_the_next(pytester: pytest.Pytester) -> None:
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(test_probe=f"START = {str(pytester.path)!r}\n{PROBE}")
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_a_leaks_threads*",
            "*left global state changed (before, after): {'torch_threads': (1, 3)}",
            "*ERROR at teardown of test_c_leaks_dtype_cwd_and_a_switch*",
            "*'default_dtype': (torch.float32, torch.float64), 'working_directory': *"
            "'smoothlab_variables': ({}, {'SMOOTHLAB_NATIVE': '0'})}",
        ]
    )
