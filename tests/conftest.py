"""Shared fixtures: a small generated shortcut data set and a DemoNet trained on it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from auditor.demo import generate_dataset, train_demo_model


@pytest.fixture(scope="session")
def demo_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/<class>/*, masks/<class>/*.png (40 per class, 64x64) and demo_model.pt."""
    root = generate_dataset(tmp_path_factory.mktemp("demo"), per_class=40, seed=1)
    model = train_demo_model(root / "data", epochs=4, seed=1)
    torch.save(model.state_dict(), root / "demo_model.pt")
    return root
