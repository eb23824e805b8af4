"""The registry of map methods: every reader agrees with it, and it stays light to import."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from auditor.cams.methods import one_pass_map
from auditor.cli import main
from auditor.errors import AuditorError
from auditor.map_methods import GRADIENT_METHODS, METHODS, ONE_PASS_METHODS, SEPARATE_METHODS


@pytest.mark.parametrize("name", list(METHODS))
def test_each_function_takes_exactly_what_the_registry_says_it_needs(name: str) -> None:
    method = METHODS[name]
    parameters = list(inspect.signature(method.function).parameters)
    if method.separate:
        assert parameters == ["model", "images", "targets", "layer", "options"]
        return
    expected = ["activations"]
    expected += ["gradients"] * method.needs_gradients
    expected += ["head", "targets"] * method.needs_head
    assert parameters == expected


def test_the_name_lists_partition_the_registry() -> None:
    assert set(ONE_PASS_METHODS) | set(SEPARATE_METHODS) == set(METHODS)
    assert not set(ONE_PASS_METHODS) & set(SEPARATE_METHODS)
    assert set(GRADIENT_METHODS) == {
        "gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "counterfactual"
    }


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_a_gradient_method_without_gradients_says_what_is_missing(name: str) -> None:
    with pytest.raises(AuditorError, match=re.escape(f"method '{name}' needs the gradients")):
        one_pass_map(name, torch.rand(1, 2, 3, 3))


def test_cam_without_a_head_says_what_is_missing() -> None:
    with pytest.raises(AuditorError, match="method 'cam' needs the class weights"):
        one_pass_map("cam", torch.rand(1, 2, 3, 3), targets=torch.zeros(1, dtype=torch.long))


def test_one_pass_map_passes_only_what_a_method_needs() -> None:
    activations = torch.rand(2, 3, 4, 5)
    gradients = torch.randn(2, 3, 4, 5)
    # Grad-CAM by hand: relu(sum_k mean_ij(G_k) A_k).
    expected = torch.einsum("bk,bkhw->bhw", gradients.mean(dim=(2, 3)), activations).clamp_min(0)
    torch.testing.assert_close(one_pass_map("gradcam", activations, gradients), expected)
    # Eigen-CAM ignores gradients it is handed.
    torch.testing.assert_close(one_pass_map("eigencam", activations, gradients),
                               one_pass_map("eigencam", activations))


def test_config_and_cli_import_without_torch() -> None:
    code = ("import sys, auditor.config, auditor.cli, auditor.map_methods; "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"


def test_cli_help_lists_the_registry() -> None:
    audit_help = CliRunner().invoke(main, ["audit", "--help"], terminal_width=400).output
    explain_help = CliRunner().invoke(main, ["explain", "--help"], terminal_width=400).output
    flat_audit = " ".join(audit_help.split())
    assert f"comma-separated ({', '.join(ONE_PASS_METHODS)})" in flat_audit
    assert ", ".join(SEPARATE_METHODS) in flat_audit
    assert ", ".join(METHODS) in " ".join(explain_help.split())
