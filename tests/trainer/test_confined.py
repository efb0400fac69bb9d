"""open_confined and confined_path: a file inside a folder, never one a symbolic link leads to."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from trainer.confined import ConfinementError, confined_path, open_confined


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """root/sub/data.csv inside, secret.csv outside the root."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "data.csv").write_bytes(b"a,b\n1,2\n")
    (tmp_path / "secret.csv").write_bytes(b"secret\n")
    return root, tmp_path / "secret.csv"


def test_a_file_inside_opens_by_absolute_or_relative_path(layout):
    root, _ = layout
    for path in (root / "sub" / "data.csv", Path("sub/data.csv"), Path("./sub/./data.csv")):
        with open_confined(root, path) as fh:
            assert fh.read() == b"a,b\n1,2\n"


def test_a_final_link_escaping_the_root_is_refused(layout):
    root, secret = layout
    (root / "sub" / "data.csv").unlink()
    os.symlink(secret, root / "sub" / "data.csv")
    with pytest.raises(ConfinementError, match="'data.csv' is a symbolic link; it is not followed"):
        open_confined(root, root / "sub" / "data.csv")


def test_a_folder_component_that_is_a_link_is_refused(layout, tmp_path):
    root, _ = layout
    (root / "sub").rename(tmp_path / "moved")
    os.symlink(tmp_path / "moved", root / "sub")
    with pytest.raises(ConfinementError, match="'sub' is a symbolic link"):
        open_confined(root, root / "sub" / "data.csv")
    os.symlink("sub", root / "inner")        # even a link that stays inside: the caller resolves first
    with pytest.raises(ConfinementError, match="'inner' is a symbolic link"):
        open_confined(root, Path("inner/data.csv"))


def test_paths_outside_or_not_files_are_refused(layout):
    root, secret = layout
    with pytest.raises(ConfinementError, match="not inside the allowed folder"):
        open_confined(root, secret)
    with pytest.raises(ConfinementError, match="without '..'"):
        open_confined(root, Path("sub/../../secret.csv"))
    with pytest.raises(ConfinementError, match="does not name a regular file"):
        open_confined(root, root / "sub")
    os.mkfifo(root / "pipe.csv")             # opening must not wait for a writer
    with pytest.raises(ConfinementError, match="does not name a regular file"):
        open_confined(root, root / "pipe.csv")
    with pytest.raises(FileNotFoundError):
        open_confined(root, root / "missing.csv")
    with pytest.raises(ConfinementError, match="'data.csv' is not a folder"):
        open_confined(root, root / "sub" / "data.csv" / "x")


def test_the_root_itself_may_be_reached_through_a_link(layout, tmp_path):
    root, _ = layout
    os.symlink(root, tmp_path / "alias")
    with open_confined(tmp_path / "alias", Path("sub/data.csv")) as fh:
        assert fh.read().startswith(b"a,b")


@pytest.mark.parametrize("name, problem", [("../x.pt", "without '..'"), ("/etc/passwd", "absolute path"),
                                           ("", "not a file name"), (None, "not a file name"),
                                           ("a\0b", "not a file name")])
def test_confined_path_refuses_names_leaving_the_folder(layout, name, problem):
    with pytest.raises(ConfinementError, match=problem):
        confined_path(layout[0], name)


def test_confined_path_follows_links_only_while_they_stay_inside(layout):
    root, secret = layout
    os.symlink("sub/data.csv", root / "inside.csv")
    assert confined_path(root, "inside.csv") == (root / "sub" / "data.csv").resolve()
    os.symlink(secret, root / "out.csv")
    with pytest.raises(ConfinementError, match="leads outside the folder"):
        confined_path(root, "out.csv")
