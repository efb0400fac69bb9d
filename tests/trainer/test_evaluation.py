"""Evaluation: every figure equals scikit-learn's on the same predictions, in the user's labels;
evaluation.json at the end of a run; run.evaluate and load_model(path).evaluate."""
from __future__ import annotations

import asyncio
import json
import logging
import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

import trainer.evaluation
from tests.conftest import lagged_sequence
from trainer import Evaluation, StateError, Trainer, TrainingState, load_model
from trainer.artifacts import TrainedModel
from trainer.datasets import make_classification

SEQUENCE = {"feature_columns": ["x", "noise"], "sequence_length": 6, "hidden_units": [16], "learning_rate": 0.01}


def strict_json(path) -> dict:
    """The file parsed as strict JSON: NaN or Infinity in it fails the test."""
    def refuse(token):
        raise AssertionError(f"{path.name} holds {token}, which is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


def three_classes(rows: int = 900, seed: int = 0) -> pd.DataFrame:
    df = make_classification(rows, classes=3, seed=seed)
    df["label"] = df["label"].map({0: "low", 1: "mid", 2: "high"})
    return df


def assert_classification_matches_sklearn(ev: Evaluation) -> None:
    """Recompute every figure with scikit-learn from the Evaluation's own predictions."""
    classes = ev.classes
    y_true, y_pred = ev.y_true, ev.y_pred
    cm = skm.confusion_matrix(y_true, y_pred, labels=classes)
    np.testing.assert_array_equal(ev.confusion_matrix.to_numpy(), cm)
    assert list(ev.confusion_matrix.index) == classes and list(ev.confusion_matrix.columns) == classes
    report = skm.classification_report(y_true, y_pred, labels=classes, output_dict=True, zero_division=0)
    for c in classes:
        row = ev.report.loc[c]
        for ours, theirs in [("precision", "precision"), ("recall", "recall"), ("f1-score", "f1-score"),
                             ("support", "support")]:
            assert row[ours] == pytest.approx(report[str(c)][theirs], abs=1e-12), (c, ours)
    for avg in ("macro avg", "weighted avg"):
        for col in ("precision", "recall", "f1-score", "support"):
            assert ev.report.loc[avg, col] == pytest.approx(report[avg][col], abs=1e-12), (avg, col)
    assert ev.accuracy == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=1e-12)
    assert ev.report.loc["accuracy", "f1-score"] == pytest.approx(report["accuracy"], abs=1e-12)
    proba = ev.probabilities[classes].to_numpy()
    if len(classes) == 2:
        expected_auc = skm.roc_auc_score(y_true == classes[1], proba[:, 1])
    else:
        expected_auc = skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=classes)
    assert ev.roc_auc == pytest.approx(expected_auc, abs=1e-12)


# ---------------------------------------------------------------------- figures equal scikit-learn's

def test_binary_classification_on_the_validation_split(backend, base_config, clf_df, tmp_path):
    run = Trainer(base_config(epochs=3, output_path=str(tmp_path / "m")), clf_df).fit()
    ev = run.evaluate()
    assert ev.task == "classification" and ev.split == "validation" and ev.classes == [0, 1]
    assert_classification_matches_sklearn(ev)
    # The predictions are the model's own on the rows the run held out, and the labels theirs.
    val_rows = clf_df.iloc[run.data.val_index]
    np.testing.assert_array_equal(ev.predictions.index, run.data.val_index)
    np.testing.assert_array_equal(ev.y_true, val_rows["label"].to_numpy())
    np.testing.assert_array_equal(ev.y_pred, TrainedModel.from_run(run).predict(val_rows))
    # With the best weights restored it reproduces the best epoch's val_accuracy.
    assert ev.accuracy == pytest.approx(run.best_metrics["accuracy"], abs=1 / len(val_rows))
    assert 0.5 < ev.roc_auc <= 1.0 and "positive class 1" in ev.roc_auc_average


def test_several_string_classes_in_the_users_labels(backend, base_config, tmp_path):
    df = three_classes()
    run = Trainer(base_config(epochs=3, output_path=str(tmp_path / "m")), df).fit()
    ev = load_model(tmp_path / "m").evaluate(df)
    assert ev.classes == ["high", "low", "mid"] and ev.split == "data" and ev.n_samples == len(df)
    assert list(ev.report.index) == ["high", "low", "mid", "accuracy", "macro avg", "weighted avg"]
    assert ev.y_true.tolist() == df["label"].tolist() and set(ev.y_pred) <= {"high", "low", "mid"}
    assert ev.roc_auc_average == "macro one-vs-rest"
    assert_classification_matches_sklearn(ev)
    # load_model and the run itself agree on the same data.
    pd.testing.assert_frame_equal(ev.confusion_matrix, run.evaluate(df).confusion_matrix)


def test_regression_mae_rmse_r2_and_residuals(backend, base_config, reg_df, tmp_path):
    run = Trainer(base_config(epochs=3, target_column="target", output_path=str(tmp_path / "r")), reg_df).fit()
    for ev in (run.evaluate(), load_model(tmp_path / "r").evaluate(reg_df)):
        y, p = ev.y_true, ev.y_pred
        assert ev.task == "regression" and len(y) == ev.n_samples
        assert ev.mae == pytest.approx(skm.mean_absolute_error(y, p), abs=1e-12)
        assert ev.rmse == pytest.approx(skm.root_mean_squared_error(y, p), abs=1e-12)
        assert ev.r2 == pytest.approx(skm.r2_score(y, p), abs=1e-12)
        np.testing.assert_allclose(ev.residuals, y - p)
        assert ev.r2 > 0.5
        with pytest.raises(AttributeError, match="classification figure"):
            ev.accuracy
    val = run.evaluate()
    # The validation targets come back from the run's float32 training copy: equal to ~1e-7 of the spread.
    np.testing.assert_allclose(val.y_true, reg_df["target"].to_numpy()[run.data.val_index],
                               atol=1e-6 * reg_df["target"].std())
    np.testing.assert_allclose(val.y_pred, TrainedModel.from_run(run).predict(reg_df.iloc[run.data.val_index]))
    assert val.mae == pytest.approx(run.best_metrics["mae"], rel=1e-4)


@pytest.mark.parametrize("target", ["label", "y"])
def test_sequence_models_are_evaluated_per_window(backend, base_config, seq_df, tmp_path, target):
    run = Trainer(base_config(epochs=2, model_type="cnn", target_column=target, output_path=str(tmp_path / "s"),
                              **SEQUENCE), seq_df).fit()
    new = lagged_sequence(200, seed=5)
    model = load_model(tmp_path / "s")
    ev = model.evaluate(new)
    assert ev.n_samples == len(new) - 5                      # one per window of 6 rows, as predict
    assert list(ev.predictions.index) == list(new.index[5:])  # labelled by each window's last row
    np.testing.assert_array_equal(ev.y_pred, model.predict(new))
    np.testing.assert_array_equal(ev.y_true, new[target].to_numpy()[5:])
    if target == "label":
        assert_classification_matches_sklearn(ev)
    else:
        assert ev.mae == pytest.approx(skm.mean_absolute_error(ev.y_true, ev.y_pred), abs=1e-12)
    val = run.evaluate()
    assert val.n_samples == len(run.data.val_index) and list(val.predictions.index) == list(run.data.val_index)


def test_undefined_figures_are_null_with_a_note(backend, base_config, tmp_path):
    df = three_classes()
    Trainer(base_config(epochs=1, output_path=str(tmp_path / "m")), df).fit()
    model = load_model(tmp_path / "m")
    two_of_three = model.evaluate(df[df["label"] != "mid"])
    assert two_of_three.roc_auc is None and any("ROC-AUC" in n and "mid" in n for n in two_of_three.notes)
    assert two_of_three.report.loc["mid", "support"] == 0
    assert_classification_matches_sklearn_without_auc(two_of_three)
    binary = make_classification(400, seed=2)
    Trainer(base_config(epochs=1, output_path=str(tmp_path / "b")), binary).fit()
    one_class = load_model(tmp_path / "b").evaluate(binary[binary["label"] == 1])
    assert one_class.roc_auc is None and any("only class [1]" in n for n in one_class.notes)
    for ev in (two_of_three, one_class):
        text = json.dumps(ev.to_dict(), allow_nan=False)     # strict JSON: null, not NaN
        back = Evaluation.from_dict(json.loads(text))
        assert back.roc_auc is None and back.notes == ev.notes
        pd.testing.assert_frame_equal(back.confusion_matrix, ev.confusion_matrix, check_dtype=False)


def assert_classification_matches_sklearn_without_auc(ev: Evaluation) -> None:
    report = skm.classification_report(ev.y_true, ev.y_pred, labels=ev.classes, output_dict=True, zero_division=0)
    for avg in ("macro avg", "weighted avg"):
        assert ev.report.loc[avg, "f1-score"] == pytest.approx(report[avg]["f1-score"], abs=1e-12)
    np.testing.assert_array_equal(ev.confusion_matrix.to_numpy(),
                                  skm.confusion_matrix(ev.y_true, ev.y_pred, labels=ev.classes))


# ---------------------------------------------------------------------- evaluation.json

def test_every_run_with_an_output_path_writes_evaluation_json(backend, base_config, tmp_path):
    df = three_classes()
    run = Trainer(base_config(epochs=2, output_path=str(tmp_path / "m")), df).fit()
    saved = strict_json(tmp_path / "m" / "evaluation.json")
    assert saved == json.loads(json.dumps(run.evaluate().to_dict()))
    assert saved["split"] == "validation" and saved["classes"] == ["high", "low", "mid"]
    assert saved["report"][0]["class"] == "high" and saved["report"][-1]["class"] == "weighted avg"
    meta = json.loads((tmp_path / "m" / "metadata.json").read_text())
    assert meta["evaluation"]["file"] == "evaluation.json"
    assert meta["evaluation"]["metrics"] == saved["metrics"]
    back = Evaluation.load(tmp_path / "m")
    pd.testing.assert_frame_equal(back.confusion_matrix, run.evaluate().confusion_matrix, check_dtype=False)
    pd.testing.assert_frame_equal(back.report, run.evaluate().report, check_dtype=False, check_index_type=False)


def test_regression_evaluation_json_keeps_points_for_the_plots(backend, base_config, reg_df, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer.evaluation, "MAX_POINTS", 100)
    run = Trainer(base_config(epochs=1, target_column="target", output_path=str(tmp_path / "r")), reg_df).fit()
    saved = strict_json(tmp_path / "r" / "evaluation.json")
    assert saved["n_samples"] == len(run.data.val_index) > 100
    points = saved["points"]
    assert len(points["row"]) == 100 and set(points["row"]) <= set(run.data.val_index.tolist())
    np.testing.assert_allclose(np.subtract(points["actual"], points["predicted"]), points["residual"])
    ev = run.evaluate()
    assert saved["metrics"] == {"mae": ev.mae, "rmse": ev.rmse, "r2": ev.r2}       # from every sample


def test_a_run_that_failed_before_its_first_epoch_writes_none(backend, base_config, reg_df, tmp_path):
    out = tmp_path / "nan"
    out.mkdir()
    (out / "evaluation.json").write_text('{"stale": true}')     # from an earlier run in the folder
    run = Trainer(base_config(target_column="target", optimizer="sgd", learning_rate=10.0, output_path=str(out)),
                  reg_df).fit()
    assert run.state == TrainingState.FAILED and run.current_epoch == 0
    assert not (out / "evaluation.json").exists()
    assert "before its first epoch" in json.loads((out / "metadata.json").read_text())["evaluation"]["skipped"]


def test_an_evaluation_that_raises_never_fails_the_run(backend, base_config, clf_df, tmp_path, monkeypatch, caplog):
    def broken(run):
        raise RuntimeError("simulated evaluation bug")

    monkeypatch.setattr(trainer.evaluation, "evaluate_validation", broken)
    with caplog.at_level(logging.WARNING, logger="trainer"):
        run = Trainer(base_config(epochs=1, output_path=str(tmp_path / "m")), clf_df).fit()
    assert run.state == TrainingState.COMPLETED and run.error is None
    meta = json.loads((tmp_path / "m" / "metadata.json").read_text())
    assert meta["evaluation"] == {"file": None, "error": "RuntimeError: simulated evaluation bug"}
    assert not (tmp_path / "m" / "evaluation.json").exists()
    assert load_model(tmp_path / "m").predict(clf_df).shape == (len(clf_df),)      # the rest is all there
    assert "could not evaluate" in caplog.text


def test_diverged_weights_are_noted_not_evaluated(backend, base_config, reg_df, tmp_path):
    # The rate rises every epoch until SGD diverges (see test_run); without restoring the best
    # weights the model ends with non-finite weights: the run fails for that reason, not evaluation's.
    run = Trainer(base_config(target_column="target", optimizer="sgd", learning_rate=0.001,
                              learning_rate_scheduler="cosine", T_max=6, eta_min=50.0, epochs=6,
                              restore_best_weights=False, output_path=str(tmp_path / "d")), reg_df).fit()
    assert run.state == TrainingState.FAILED and run.current_epoch >= 1 and "loss became" in run.reason
    note = json.loads((tmp_path / "d" / "metadata.json").read_text())["evaluation"]
    assert note["file"] is None and "not finite" in note["error"]
    with pytest.raises(ValueError, match="not finite"):
        run.evaluate()


# ---------------------------------------------------------------------- refusals

def test_bad_evaluation_input_is_refused_with_the_fix(backend, base_config, tmp_path):
    df = three_classes(400)
    Trainer(base_config(epochs=1, output_path=str(tmp_path / "m")), df).fit()
    model = load_model(tmp_path / "m")
    with pytest.raises(ValueError, match="lacks the target column 'label'.*predict"):
        model.evaluate(df.drop(columns="label"))
    with pytest.raises(ValueError, match=r"\['huge'\] are not among the known classes"):
        model.evaluate(df.assign(label="huge"))
    with pytest.raises(ValueError, match="have no 'label' value"):
        model.evaluate(df.assign(label=df["label"].where(df.index > 3)))
    with pytest.raises(ValueError, match="lacks feature columns"):
        model.evaluate(df.drop(columns="f1"))
    with pytest.raises(TypeError, match="DataFrame"):
        model.evaluate(df.to_numpy())


def test_evaluate_is_refused_while_the_run_trains(backend, base_config, clf_df):
    run = Trainer(base_config(epochs=10_000), clf_df)
    refusals: list[str] = []
    tried: list[bool] = []

    def on_event(event, data):
        if event == "batch_end" and not tried:
            tried.append(True)
            try:
                run.evaluate()
            except StateError as exc:
                refusals.append(str(exc))
            finally:
                run.stop()

    run.add_callback(on_event)

    async def main():
        run.start()
        await run.wait()

    asyncio.run(main())
    assert run.state == TrainingState.STOPPED
    assert len(refusals) == 1 and "while the run is running" in refusals[0]
    assert math.isfinite(run.evaluate().accuracy)            # after the end it works
