"""The command line, run as users run it: ``python -m vaebook`` in a subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL = [
    "--hidden-dims",
    "32",
    "--latent-dim",
    "4",
    "--batch-size",
    "256",
    "--threads",
    "1",
    "--no-progress",
]


def vaebook(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "vaebook", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def in_process(capsys, *args):
    """The CLI entry point without a new interpreter (variations of an already covered case)."""
    from vaebook.cli import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # argparse's refusals
        code = e.code
    return subprocess.CompletedProcess(args, code, "", capsys.readouterr().err)


def assert_usage_error(result, *fragments):
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("cli")
    result = vaebook(
        "train", "--dataset", "digits", "--epochs", "2", "--run-name", "r", *SMALL, cwd=cwd
    )
    assert result.returncode == 0, result.stderr
    return cwd, cwd / "runs" / "r"


def test_train_writes_run_under_default_runs_folder(trained_run):
    cwd, run = trained_run
    assert (run / "metrics.json").is_file() and (run / "provenance.json").is_file()
    assert json.loads((run / "config.json").read_text())["runs_dir"] == "runs"


def test_evaluate_reports_consistent_bounds(trained_run):
    cwd, run = trained_run
    result = vaebook("evaluate", run, "--k", "500", "--iwae-k", "20", cwd=cwd)
    assert result.returncode == 0, result.stderr
    ev = json.loads((run / "evaluation.json").read_text())
    assert ev["elbo"] <= ev["iwae_20"] <= ev["log_likelihood"]
    assert ev["consistent"] and ev["examples"] == 359
    assert "ELBO <= IWAE-20 <= estimate: yes" in result.stdout
    assert "log p(x), k=500" in result.stderr and "359/359" in result.stderr  # progress bar


def test_list_shows_datasets_and_runs(trained_run, capsys):
    from vaebook.cli import main

    cwd, _ = trained_run
    assert main(["list", "--runs-dir", str(cwd / "runs")]) == 0
    result = subprocess.CompletedProcess([], 0, capsys.readouterr().out, "")
    assert result.returncode == 0
    for name in ("digits", "mnist", "ppca", "r ", "epoch 2/2"):
        assert name in result.stdout


def test_train_from_config_file_and_progress_bar(tmp_path):
    (tmp_path / "cfg.json").write_text(
        json.dumps({"dataset": "digits", "epochs": 1, "hidden_dims": [16], "latent_dim": 2})
    )
    result = vaebook(
        "train", "--config", "cfg.json", "--run-name", "c", "--epochs", "2", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "runs/c/config.json").read_text())
    assert config["epochs"] == 2 and config["hidden_dims"] == [16]  # flags override the file
    assert "elbo=" in result.stderr and "step" in result.stderr  # tqdm bar with the running ELBO


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["reproduce"], ["list"]])
def test_help(command, tmp_path):
    result = vaebook(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0 and "usage:" in result.stdout


def subparsers():
    import argparse

    from vaebook.cli import build_parser

    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_config_field_is_a_train_flag_with_help_and_default(capsys):
    """``train --help`` names every flag's default; every TrainConfig field has a flag, and
    the flag's name is the field's."""
    from vaebook.vae.config import TrainConfig

    train = subparsers()["train"]
    flags = {a.dest: a for a in train._actions if a.dest != "help"}
    assert set(TrainConfig.fields()) <= set(flags)
    for name in TrainConfig.fields():
        assert flags[name].option_strings[0] == "--" + name.replace("_", "-")
    for dest, action in flags.items():
        assert action.help and "(default: " in action.help, dest
    with pytest.raises(SystemExit):
        train.parse_args(["--help"])
    shown = capsys.readouterr().out
    assert shown.count("(default:") >= len(flags) - 2  # argparse wraps a few help lines
    assert "--no-analytic-kl" in shown and "--latent-dim LATENT_DIM" in shown


def test_one_flag_per_concept_across_commands():
    """The same concept has the same flag (and the same help) in every command that has it;
    commands dispatch through the parser."""
    commands = subparsers()
    helps: dict[str, set] = {}
    for name, parser in commands.items():
        assert callable(parser.get_default("func")), name
        for action in parser._actions:
            for flag in action.option_strings:
                helps.setdefault(flag, set()).add(action.help.split(" (default")[0])
    for flag in ("--runs-dir", "--device", "--progress", "--data-dir"):
        assert len(helps[flag]) <= 2, (flag, helps[flag])  # the field's, or a narrower one
    assert {"--runs-dir"} <= {f for a in commands["list"]._actions for f in a.option_strings}
    assert {"--runs-dir"} <= {f for a in commands["reproduce"]._actions for f in a.option_strings}
    for retired in ("--out-dir", "--num-threads", "--binarize", "--model", "--devices"):
        assert retired not in helps, retired


def test_resume_takes_only_runtime_flags(trained_run, capsys):
    _, run = trained_run
    assert_usage_error(
        in_process(capsys, "train", "--resume", run, "--latent-dim", "3"), "--latent-dim"
    )


def test_argument_parsing_needs_no_torch():
    """The command line takes its name lists from vaebook.vae.config, which imports no
    torch, so a bad argument is answered before torch is loaded."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from vaebook.cli import build_parser\n"
        "args = build_parser().parse_args(['train', '--dataset', 'ppca'])\n"
        "print(args.dataset)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ppca"


def test_unknown_dataset(tmp_path):
    assert_usage_error(vaebook("train", "--dataset", "cifar10", cwd=tmp_path), "cifar10")


def test_missing_mnist_folder(tmp_path, capsys):
    result = vaebook("train", "--dataset", "mnist", "--data-dir", tmp_path / "nope", cwd=tmp_path)
    assert_usage_error(result, "does not exist", "yann.lecun.com")
    (tmp_path / "empty").mkdir()
    assert_usage_error(
        in_process(capsys, "train", "--dataset", "mnist", "--data-dir", tmp_path / "empty"),
        "missing MNIST files",
    )
    assert_usage_error(in_process(capsys, "train", "--dataset", "mnist"), "data-dir")


@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_non_positive_epochs(value, tmp_path):
    assert_usage_error(vaebook("train", "--epochs", value, cwd=tmp_path), "--epochs")


def test_batch_size_larger_than_data(tmp_path):
    assert_usage_error(
        vaebook("train", "--batch-size", "100000", cwd=tmp_path), "larger than the training set"
    )


def test_config_file_with_unknown_keys_or_bad_values(tmp_path, capsys, monkeypatch):
    (tmp_path / "bad.json").write_text(json.dumps({"epochs": 2, "learning_rate": 0.1}))
    assert_usage_error(vaebook("train", "--config", "bad.json", cwd=tmp_path), "learning_rate")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.json").write_text("{not json")
    assert_usage_error(in_process(capsys, "train", "--config", "broken.json"), "broken.json")
    assert_usage_error(in_process(capsys, "train", "--config", "absent.json"), "absent.json")
    (tmp_path / "neg.json").write_text(json.dumps({"epochs": -1}))
    assert_usage_error(in_process(capsys, "train", "--config", "neg.json"), "epochs")


def test_truncated_checkpoint(trained_run, tmp_path, capsys):
    _, run = trained_run
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in run.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    data = (copy / "model.safetensors").read_bytes()
    (copy / "model.safetensors").write_bytes(data[: len(data) // 3])
    assert_usage_error(vaebook("evaluate", copy, "--k", "10", cwd=tmp_path), "truncated or corrupt")
    checkpoint = (copy / "checkpoint.safetensors").read_bytes()
    (copy / "checkpoint.safetensors").write_bytes(checkpoint[: len(checkpoint) // 3])
    assert_usage_error(
        in_process(capsys, "train", "--resume", copy, "--epochs", "3"), "truncated or corrupt"
    )
    (copy / "model.safetensors").write_bytes(b"")
    assert_usage_error(in_process(capsys, "evaluate", copy), "model.safetensors")


def test_not_a_run_folder(tmp_path, capsys):
    assert_usage_error(vaebook("evaluate", tmp_path, cwd=tmp_path), "not a run folder")
    assert_usage_error(in_process(capsys, "train", "--resume", tmp_path / "x"), "config.json")


def test_bad_inputs_each_give_one_line_and_status_2(tmp_path, capsys):
    small = [*SMALL, "--epochs", "1"]
    binary = tmp_path / "config.bin"
    binary.write_bytes(bytes(range(256)))
    assert_usage_error(in_process(capsys, "train", "--config", binary), "cannot read config")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert_usage_error(
        in_process(capsys, "train", *small, "--runs-dir", a_file), "cannot create the run folder"
    )
    assert_usage_error(
        in_process(capsys, "train", *small, "--runs-dir", a_file / "below"),
        "cannot create the run folder",
    )
    for device in ("meta", "xla", "mps"):
        assert_usage_error(in_process(capsys, "train", *small, "--device", device), "device")
    assert_usage_error(
        in_process(capsys, "train", *small, "--run-name", "../../escape"), "run_name"
    )
    assert_usage_error(in_process(capsys, "train", *small, "--hidden-dims", ""), "hidden_dims")
    assert not (tmp_path.parent / "escape").exists()


def test_list_marks_a_bad_run_and_lists_the_good_ones(trained_run, tmp_path, capsys):
    _, run = trained_run
    runs = tmp_path / "runs"
    runs.mkdir()
    good, bad = runs / "good", runs / "bad"
    good.mkdir()
    for f in run.iterdir():
        (good / f.name).write_bytes(f.read_bytes())
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"hidden_dims": "foo"}))
    from vaebook.cli import main

    assert main(["list", "--runs-dir", str(runs)]) == 0
    stdout = capsys.readouterr().out
    lines = stdout.splitlines()
    assert any(l.strip().startswith("good") and "epoch 2/2" in l for l in lines), stdout
    assert any(l.strip().startswith("bad") and "hidden_dims" in l for l in lines), stdout


def snapshot(folder: Path) -> dict:
    """Every file below ``folder`` with its bytes and modification time."""
    return {
        p.relative_to(folder): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_npy_header_claiming_more_than_the_file_holds(tmp_path, capsys):
    """A memory bomb: a few bytes whose header asks NumPy for terabytes. Refused from the
    header, before anything is allocated; nothing written."""
    import io
    import zipfile

    import numpy as np

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)}
    )
    bomb = header.getvalue() + bytes(64)
    (tmp_path / "bomb.npy").write_bytes(bomb)
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w") as archive:
        archive.writestr("x.npy", bomb)
    runs = tmp_path / "runs"
    for name in ("bomb.npy", "bomb.npz"):
        result = vaebook(
            "train", "--dataset", "file", "--data-dir", name, "--runs-dir", runs, cwd=tmp_path
        )
        assert_usage_error(result, name, "header claims", "(1000000, 1000000)")
    assert not runs.exists()
    np.save(tmp_path / "ok.npy", np.zeros((3, 2)))  # an honest header still loads
    from vaebook.vae.data import load_array

    assert load_array(tmp_path / "ok.npy").shape == (3, 2)


def test_resume_after_config_edited_to_another_latent_size(trained_run, tmp_path):
    """config.json edited after training so that the weights no longer fit: one line, exit 2,
    and the run folder exactly as it was."""
    _, run = trained_run
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in run.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    config = json.loads((copy / "config.json").read_text())
    config["latent_dim"] += 3
    (copy / "config.json").write_text(json.dumps(config))
    before = snapshot(copy)
    result = vaebook("train", "--resume", copy, "--epochs", "3", cwd=tmp_path)
    assert_usage_error(result, "does not fit", "config.json")
    assert snapshot(copy) == before
