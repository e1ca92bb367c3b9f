"""``attngan tune-truncation``: the rule that chooses a model's default truncation, the sweep that
measures it (same captions and seeds at every value), and ``--write``, which stores the choice in
the model folder without touching its weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from attngan.cli import main
from attngan.config import ConfigError
from attngan.data import DataSpec
from attngan.errors import SettingError
from attngan.hub import file_sha256, load_pretrained, update_metadata
from attngan.inference.pipeline import AttnGANPipeline
from attngan.metrics import EvalConfig, load_classifier, run_evaluation, save_classifier
from attngan.metrics.eval_data import train_data_classifier
from attngan.metrics.truncation_choice import TruncationTrial, choose_truncation, sweep_truncation

from .test_evaluate import TINY_RECIPE

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    classifier = train_data_classifier(DataSpec("shapes"), recipe=TINY_RECIPE)
    return save_classifier(classifier, tmp_path_factory.mktemp("classifiers") / "shapes")


def test_the_most_accurate_value_that_keeps_the_diversity_is_chosen() -> None:
    trials = [TruncationTrial(1.0, 0.40, 1.02), TruncationTrial(0.7, 0.45, 0.83), TruncationTrial(0.5, 0.48, 0.70),
              TruncationTrial(0.4, 0.49, 0.58)]
    assert choose_truncation(trials, 0.6) == trials[2]  # 0.4 is more accurate but too alike
    assert choose_truncation(trials, 0.5) == trials[3]
    assert choose_truncation(trials, 0.9) == trials[0]
    assert choose_truncation(trials, 1.5) is None
    tie = [TruncationTrial(0.5, 0.5, 0.9), TruncationTrial(0.8, 0.5, 0.9), TruncationTrial(0.6, 0.5, 0.9)]
    assert choose_truncation(tie, 0.6) == tie[1]  # ties: the more varied, larger value


def test_the_sweep_scores_each_value_as_evaluate_does(tiny_model_dir: Path, classifier_dir: Path) -> None:
    pipe = AttnGANPipeline.from_pretrained(tiny_model_dir, precision="fp32")
    classifier = load_classifier(classifier_dir)
    cfg = EvalConfig(data=DataSpec("shapes", split="validation"), num_samples=6, batch_size=6,
                     diversity_captions=3, diversity_seeds=2)
    seen: list[float] = []
    trials = sweep_truncation(pipe, cfg, classifier, [1.0, 0.5], "scene_accuracy",
                              lambda trial, _: seen.append(trial.truncation))
    assert seen == [1.0, 0.5] and pipe.truncation == 1.0  # the pipeline's own value is left as it was
    for trial, result in trials:
        # the same figures as one evaluation at that truncation
        alone = run_evaluation(AttnGANPipeline.from_pretrained(tiny_model_dir, precision="fp32",
                                                               truncation=trial.truncation),
                               EvalConfig(data=cfg.data, metrics=["scene_accuracy", "diversity"], num_samples=6,
                                          batch_size=6, diversity_captions=3, diversity_seeds=2), classifier)
        assert alone is not None
        assert trial.accuracy == alone.summary["accuracy_all"]
        assert trial.diversity == alone.summary["diversity_ratio"]
        assert {r["generation"]["truncation"] for r in result.records} == {trial.truncation}
    assert trials[1][0].diversity < trials[0][0].diversity
    with pytest.raises(SettingError, match="accuracy_all"):
        sweep_truncation(pipe, cfg, classifier, [1.0], "r_precision")
    with pytest.raises(ValueError, match="truncation"):
        sweep_truncation(pipe, cfg, classifier, [0.0], "scene_accuracy")


def test_update_metadata_keeps_the_weights_and_checks_what_it_writes(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(tiny_model_dir, tmp_path / "model")
    weights = file_sha256(folder / "model.safetensors")
    update_metadata(folder, {"truncation": 0.5})
    assert load_pretrained(folder).metadata["truncation"] == 0.5  # the weights' hash still matches
    assert file_sha256(folder / "model.safetensors") == weights
    before = (folder / "config.json").read_text()
    with pytest.raises(ConfigError, match="example_captions"):
        update_metadata(folder, {"example_captions": "not a list"})
    assert (folder / "config.json").read_text() == before  # nothing half-written
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in tiny_model_dir.iterdir())


def test_cli_chooses_and_writes_the_default(tiny_model_dir: Path, classifier_dir: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(tiny_model_dir, tmp_path / "model")
    out = tmp_path / "results.jsonl"
    args = ["tune-truncation", "--model", str(folder), "--classifier", str(classifier_dir), "--num-samples", "6",
            "--batch-size", "6", "--values", "0.5,1", "--precision", "fp32", "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--min-diversity", "0", "--write"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[1] for line in lines if line.startswith("truncation ")] == ["1", "0.5"]
    chosen = float(next(line for line in lines if line.startswith("chosen: ")).split()[2])
    assert json.loads((folder / "config.json").read_text())["metadata"]["truncation"] == chosen
    assert AttnGANPipeline.from_pretrained(folder).truncation == chosen
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted({r["generation"]["truncation"] for r in records}) == [0.5, 1.0]
    assert {r["metric"] for r in records} == {"scene_accuracy", "diversity"}

    strict = CliRunner().invoke(main, [*args, "--min-diversity", "100", "--write"])
    assert strict.exit_code == 1 and "nothing chosen" in strict.output
    assert json.loads((folder / "config.json").read_text())["metadata"]["truncation"] == chosen  # unchanged


def test_cli_refuses_what_it_cannot_do(tiny_model_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    bundled = runner.invoke(main, ["tune-truncation", "--write"])
    assert bundled.exit_code == 2 and "--write" in bundled.output and "--model PATH" in bundled.output
    for bad in ("0,0.5", "x", "1.5", ""):
        r = runner.invoke(main, ["tune-truncation", "--model", str(tiny_model_dir), "--values", bad])
        assert r.exit_code == 2 and "--values" in r.output, (bad, r.output)
    empty = tmp_path / "empty"
    empty.mkdir()
    r = runner.invoke(main, ["tune-truncation", "--model", str(empty), "--write"])
    assert r.exit_code == 2 and "config.json" in r.output
    assert not list(empty.iterdir())


def test_values_are_tried_largest_first_without_repeats() -> None:
    from attngan.cli.tune_truncation_cmd import _values

    assert _values("0.4, 1.0,0.4,0.7") == [1.0, 0.7, 0.4]
    assert _values("1") == [1.0]


def test_cli_tunes_at_a_number_of_candidates_and_writes_both(tiny_model_dir: Path, classifier_dir: Path,
                                                              tmp_path: Path) -> None:
    folder = shutil.copytree(tiny_model_dir, tmp_path / "model")
    out = tmp_path / "results.jsonl"
    result = CliRunner().invoke(main, ["tune-truncation", "--model", str(folder), "--classifier", str(classifier_dir),
                                       "--num-samples", "6", "--batch-size", "6", "--values", "0.5,1", "--precision",
                                       "fp32", "--candidates", "2", "--min-diversity", "0", "--out", str(out),
                                       "--write"])
    assert result.exit_code == 0, result.output
    assert "best of 2 candidates" in result.output and "wrote metadata.truncation" in result.output
    metadata = json.loads((folder / "config.json").read_text())["metadata"]
    assert metadata["candidates"] == 2
    pipe = AttnGANPipeline.from_pretrained(folder)
    assert pipe.candidates == 2 and pipe.truncation == metadata["truncation"]
    assert {json.loads(line)["generation"]["candidates"] for line in out.read_text().splitlines()} == {2}


def test_the_fewest_candidates_within_the_margin_are_chosen() -> None:
    from attngan.metrics.truncation_choice import choose_sampling

    trials = [TruncationTrial(1.0, 0.375, 1.03, 1), TruncationTrial(0.4, 0.461, 0.62, 1),
              TruncationTrial(0.7, 0.518, 0.78, 8), TruncationTrial(0.4, 0.530, 0.59, 8),  # too alike
              TruncationTrial(0.7, 0.523, 0.79, 16)]
    chosen = choose_sampling(trials, 0.6, 0.01)
    assert (chosen.candidates, chosen.truncation) == (8, 0.7)  # 16 adds 0.005: less than the margin
    assert choose_sampling(trials, 0.6, 0.0).candidates == 16
    assert choose_sampling(trials, 0.6, 1.0).candidates == 1
    assert choose_sampling(trials, 2.0, 0.01) is None


def test_cli_sweeps_numbers_of_candidates_and_writes_the_choice(tiny_model_dir: Path, classifier_dir: Path,
                                                                tmp_path: Path) -> None:
    folder = shutil.copytree(tiny_model_dir, tmp_path / "model")
    args = ["tune-truncation", "--model", str(folder), "--classifier", str(classifier_dir), "--num-samples", "6",
            "--batch-size", "6", "--values", "1", "--precision", "fp32", "--min-diversity", "0",
            "--out", str(tmp_path / "results.jsonl")]
    result = CliRunner().invoke(main, [*args, "--candidate-values", "2,1", "--candidate-margin", "1", "--write"])
    assert result.exit_code == 0, result.output
    assert [line.split()[1] for line in result.output.splitlines() if line.startswith("candidates ")] == ["1", "2"]
    assert "chosen: truncation 1, candidates 1" in result.output  # a margin of 1: the fewest
    assert json.loads((folder / "config.json").read_text())["metadata"]["candidates"] == 1
    both = CliRunner().invoke(main, [*args, "--candidates", "2", "--candidate-values", "1,2"])
    assert both.exit_code == 2 and "not both" in both.output
    bad = CliRunner().invoke(main, [*args, "--candidate-values", "0,2"])
    assert bad.exit_code == 2 and "--candidate-values" in bad.output
