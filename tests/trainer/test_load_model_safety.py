"""What load_model will and will not load: no unpickled code unless trust_pickle=True, a user's
model rebuilt from its class, factory or import name, and every file kept inside the folder."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from trainer import Trainer, TrainingState, load_model  # noqa: E402
from trainer.artifacts import TrainedModel  # noqa: E402


class TinyNet(torch.nn.Module):
    """A user's own module, defined at module level so it can be pickled and named."""

    def __init__(self, n_in: int = 4, n_out: int = 1):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(n_in, 8), torch.nn.ReLU(), torch.nn.Linear(8, n_out))

    def forward(self, x):
        return self.body(x)


class NeedsArguments(TinyNet):
    def __init__(self, width: int):
        super().__init__()


class Planted:
    """Unpickling this writes a marker file: the stand-in for a command an attacker would run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, reg_df):
    """A finished run of TinyNet saved to a folder, and its in-memory predictions."""
    out = tmp_path_factory.mktemp("custom") / "run"
    cfg = {"backend": "torch", "seed": 0, "epochs": 2, "batch_size": 64, "learning_rate": 0.01,
           "device": "cpu", "target_column": "target", "output_path": str(out)}
    run = Trainer(cfg, reg_df, model=TinyNet()).fit()
    assert run.state == TrainingState.COMPLETED, run.reason
    return out, TrainedModel.from_run(run).predict(reg_df)


def copy_of(folder: Path, dest: Path) -> Path:
    dest.mkdir()
    for f in folder.iterdir():
        if f.is_file():
            (dest / f.name).write_bytes(f.read_bytes())
    return dest


def edit_meta(folder: Path, **model_meta) -> None:
    meta = json.loads((folder / "metadata.json").read_text())
    meta["model"].update(model_meta)
    (folder / "metadata.json").write_text(json.dumps(meta))


def plant(folder: Path, name: str, marker: Path) -> None:
    torch.save(Planted(marker), folder / name)


# ---------------------------------------------------------------------- no code runs by default

def test_a_planted_module_pickle_is_never_unpickled_by_default(saved, tmp_path):
    folder = copy_of(saved[0], tmp_path / "shared")
    marker = tmp_path / "marker"
    plant(folder, "model_module.pt", marker)
    edit_meta(folder, factory=None)          # no class to rebuild from: the old code unpickled here
    with pytest.raises(RuntimeError, match=r"load_model\(path, model=TinyNet\).*trust_pickle=True"):
        load_model(folder)
    assert not marker.exists()
    load_model(folder, model=TinyNet)        # the weights still load into the user's class
    assert not marker.exists()


def test_planted_weights_are_refused_without_running(saved, tmp_path):
    folder = copy_of(saved[0], tmp_path / "shared")
    marker = tmp_path / "marker"
    plant(folder, "model.pt", marker)
    with pytest.raises(Exception, match="(?i)weights only|unpickl"):
        load_model(folder, model=TinyNet)
    assert not marker.exists()


def test_a_class_named_in_metadata_is_not_imported(saved, tmp_path, monkeypatch):
    # An attacker naming an installed module with side effects at import must get nothing.
    code = tmp_path / "code"
    code.mkdir()
    marker = tmp_path / "imported"
    (code / "planted_models_mod.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\n")
    monkeypatch.syspath_prepend(str(code))
    folder = copy_of(saved[0], tmp_path / "shared")
    edit_meta(folder, factory="planted_models_mod:Net")
    with pytest.raises(RuntimeError, match=r"model='planted_models_mod:Net'"):
        load_model(folder)
    assert not marker.exists() and "planted_models_mod" not in sys.modules


# ---------------------------------------------------------------------- the user's own class

@pytest.mark.parametrize("given", ["class", "factory", "instance", "name", "recorded"])
def test_a_custom_model_round_trips_from_its_class(saved, reg_df, given):
    folder, expected = saved
    model = {"class": TinyNet, "factory": lambda: TinyNet(4, 1), "instance": TinyNet(),
             "name": f"{__name__}:TinyNet", "recorded": None}[given]
    if given == "recorded":      # metadata.json names this module's TinyNet, imported here already
        assert json.loads((folder / "metadata.json").read_text())["model"]["factory"] == f"{__name__}:TinyNet"
    np.testing.assert_array_equal(load_model(folder, model=model).predict(reg_df), expected)


def test_trust_pickle_still_loads_a_legit_saved_module(saved, reg_df):
    folder, expected = saved
    loaded = load_model(folder, trust_pickle=True)
    np.testing.assert_array_equal(loaded.predict(reg_df), expected)


def test_bad_model_arguments_say_what_to_pass(saved):
    folder = saved[0]
    with pytest.raises(TypeError, match=r"NeedsArguments cannot be built without arguments.*NeedsArguments\(\.\.\.\)"):
        load_model(folder, model=NeedsArguments)
    with pytest.raises(TypeError, match="model= built a int, not a torch.nn.Module"):
        load_model(folder, model=lambda: 3)
    with pytest.raises(TypeError, match="model= must be a torch.nn.Module instance"):
        load_model(folder, model=3)
    with pytest.raises(ValueError, match="cannot import 'no_such_module_here'"):
        load_model(folder, model="no_such_module_here:Net")
    with pytest.raises(ValueError, match="give a \"package.module:ClassOrFunction\" name"):
        load_model(folder, model="os.system('x')")
    with pytest.raises(RuntimeError, match="(?s)do not fit the TinyNet given.*same layers"):
        load_model(folder, model=lambda: TinyNet(n_in=4, n_out=3))


# ---------------------------------------------------------------------- paths stay in the folder

@pytest.mark.parametrize("field, value", [("module", "../x"), ("module", "/etc/passwd"), ("weights", "../model.pt"),
                                          ("weights", "sub/../../model.pt")])
def test_paths_in_metadata_must_stay_in_the_folder(saved, tmp_path, field, value):
    folder = copy_of(saved[0], tmp_path / "shared")
    marker = tmp_path / "marker"
    plant(tmp_path, "x", marker)
    (tmp_path / "model.pt").write_bytes((folder / "model.pt").read_bytes())
    edit_meta(folder, **{field: value})
    with pytest.raises(ValueError, match="refusing to load.*without '..' and not as an absolute path"):
        load_model(folder, trust_pickle=True)
    assert not marker.exists()


def test_a_link_leading_out_of_the_folder_is_refused(saved, tmp_path):
    folder = copy_of(saved[0], tmp_path / "shared")
    outside = tmp_path / "outside.pt"
    outside.write_bytes((folder / "model.pt").read_bytes())
    (folder / "model.pt").unlink()
    os.symlink(outside, folder / "model.pt")
    with pytest.raises(ValueError, match="symbolic link that leads outside the folder"):
        load_model(folder, model=TinyNet)
    (folder / "config.json").rename(tmp_path / "config.json")
    os.symlink(tmp_path / "config.json", folder / "config.json")
    with pytest.raises(ValueError, match="'config.json' is a symbolic link that leads outside"):
        load_model(folder, model=TinyNet)


def test_a_link_inside_the_folder_is_fine(saved, reg_df, tmp_path):
    folder = copy_of(saved[0], tmp_path / "shared")
    (folder / "model.pt").rename(folder / "weights-v1.pt")
    os.symlink("weights-v1.pt", folder / "model.pt")
    np.testing.assert_array_equal(load_model(folder, model=TinyNet).predict(reg_df), saved[1])
