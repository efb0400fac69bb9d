"""Messages about bad data: an example value for a Python user's own DataFrame, counts and rows
only inside values_hidden (how the HTTP API's workers check a file)."""
from __future__ import annotations

import numpy as np
import pytest

from trainer import ConfigError, Trainer
from trainer.data.values import hidden, values_hidden


def config(**overrides):
    return {"target_column": "label", "device": "cpu", "backend": "torch", **overrides}


@pytest.fixture
def typo_df(clf_df):
    df = clf_df.copy()
    df["f1"] = df["f1"].astype(object)
    df.loc[3, "f1"] = "typo-value"
    return df


def test_ones_own_frame_gets_the_example_value(typo_df):
    with pytest.raises(ConfigError, match=r"like 'typo-value' \(row 3\)"):
        Trainer(config(), typo_df)


def test_hidden_values_leave_the_value_out_but_name_column_and_row(typo_df, clf_df):
    with values_hidden(), pytest.raises(ConfigError) as caught:
        Trainer(config(), typo_df)
    assert "column 'f1' is numeric except 1 value like the one in row 3" in str(caught.value)
    assert "typo-value" not in str(caught.value) and "typo-value" not in repr(caught.value.errors)

    huge = clf_df.copy()
    huge["f2"] = huge["f2"].astype(np.float64)
    huge.loc[5, "f2"] = 7.7e300
    with values_hidden(), pytest.raises(ConfigError) as caught:
        Trainer(config(), huge)
    assert "row 5" in str(caught.value) and "7.7" not in str(caught.value) and "1e300" not in str(caught.value)

    single = clf_df.assign(label="lonely-class")
    with values_hidden(), pytest.raises(ConfigError, match="needs at least 2 classes, 'label' has 1$") as caught:
        Trainer(config(), single)


def test_values_hidden_is_scoped_to_its_block():
    assert not hidden()
    with values_hidden():
        assert hidden()
        with values_hidden(False):
            assert not hidden()
        assert hidden()
    assert not hidden()
