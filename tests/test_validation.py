"""CLI input validation: bad input exits with status 2, names the key and the offending value,
and writes nothing; a tiny valid run round-trips through ``ls`` and ``export``.

Each bad-input case runs in-process through ``typer.testing.CliRunner`` and a subset also
through a real subprocess (the installed entry point), so argument parsing, exit status and
stderr are checked as a user sees them.
"""

from __future__ import annotations

import csv
import io
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scloop.cli import app
from scloop.core.config import ComponentSpec, load_spec

EXPORT_HEAD = "run_id,task,arm,seed,lambda,gamma,n_real,policy,correction,generation,metric,value".split(",")

# (id, extra argv after `run`, files to create {name: text}, substrings the message must contain)
BAD_INPUTS = [
    ("lambda-negative", ["gaussian-paper", "--set", "lambda=-0.5"], {}, ["lambda", "-0.5"]),
    ("gamma-negative", ["gaussian-paper", "--set", "gamma=-1"], {}, ["gamma", "-1"]),
    ("gamma-negative-in-list", ["gaussian-paper", "--set", "gamma=[0,2,-3]"], {}, ["gamma", "-3"]),
    ("n_real-zero", ["gaussian-paper", "--set", "n_real=0"], {}, ["n_real", "got 0"]),
    ("unknown-model", ["gaussian-paper", "--set", "model=flowmatch"], {}, ["model", "flowmatch", "gaussian", "gmm"]),
    ("unknown-correction", ["gaussian-paper", "--set", "correction=magic"], {}, ["correction", "magic", "oracle-mixture"]),
    ("unknown-key", ["gaussian-paper", "--set", "bogus=1"], {}, ["bogus", "bogus=1", "n_generations"]),
    ("wrong-type", ["gaussian-paper", "--set", "n_generations=abc"], {}, ["n_generations", "abc", "integer"]),
    ("unknown-preset", ["gaussian-papr"], {}, ["gaussian-papr", "gaussian-paper"]),
    ("unknown-model-option", ["gaussian-paper", "--set", "model.bogus_opt=1"], {}, ["model", "bogus_opt", "reg_covar"]),
    ("seeds-zero", ["gaussian-paper", "--seeds", "0"], {}, ["--seeds", "0"]),
    (
        "yaml-unknown-key",
        ["cfg.yaml"],
        {"cfg.yaml": "base: gaussian-paper\nn_generatoins: 3\n"},
        ["n_generatoins", "n_generations"],
    ),
    ("yaml-not-mapping", ["cfg.yaml"], {"cfg.yaml": "- gamma\n- 1\n"}, ["cfg.yaml", "mapping", "list"]),
]
SUBPROCESS_CASES = {"lambda-negative", "unknown-model", "wrong-type", "yaml-not-mapping"}


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _cli_cmd() -> list[str]:
    script = Path(sys.executable).parent / "scloop"
    return [str(script)] if script.exists() else [sys.executable, "-m", "scloop"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SCLOOP_RUNS"}
    env["COLUMNS"] = "200"
    return env


def _invoke(args: list[str]):
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize("case_id,argv,files,needles", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_in_process(case_id, argv, files, needles, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    before = _snapshot(tmp_path)
    code, output = _invoke(["run", *argv, "--out", str(tmp_path / "runs"), "--quiet"])
    assert code == 2, output
    assert "Traceback" not in output
    for needle in needles:
        assert needle in output, f"{needle!r} missing from: {output}"
    assert not (tmp_path / "runs").exists()
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "case_id,argv,files,needles",
    [c for c in BAD_INPUTS if c[0] in SUBPROCESS_CASES],
    ids=[c[0] for c in BAD_INPUTS if c[0] in SUBPROCESS_CASES],
)
def test_bad_input_subprocess(case_id, argv, files, needles, tmp_path):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    before = _snapshot(tmp_path)
    proc = subprocess.run(
        [*_cli_cmd(), "run", *argv, "--out", "runs", "--quiet"],
        cwd=tmp_path, capture_output=True, text=True, env=_env(), timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: ")
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr
    assert _snapshot(tmp_path) == before


def test_yaml_non_string_key_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg.yaml").write_text("base: gaussian-paper\n1: 2\nfoo: 3\n")
    code, output = _invoke(["run", "cfg.yaml", "--out", str(tmp_path / "runs"), "--quiet"])
    assert code == 2, output
    assert "foo" in output and "1" in output
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("option", ["max_iter: abc", "tol: abc"])
def test_gmm_option_wrong_type_is_a_config_error(option, tmp_path):
    out = tmp_path / "runs"
    code, output = _invoke(["run", "gaussian-paper", "--set", f"model={{name: gmm, {option}}}",
                            "--out", str(out), "--quiet"])
    assert code == 2, output
    assert option.split(":")[0] in output and "abc" in output
    assert not out.exists()


@pytest.mark.parametrize("engine", ["auto", "generic"])
def test_paper_histogram_on_3d_task_is_rejected_before_writing(engine, tmp_path):
    out = tmp_path / "runs"
    code, output = _invoke(["run", "gaussian-paper", "--set", "task.dim=3", "--set", f"engine={engine}",
                            "--set", "n_generations=2", "--out", str(out), "--quiet"])
    assert code == 2, output
    assert "2-D" in output and "paper-histogram" in output
    assert not out.exists() or not any(out.iterdir())


# ---------------------------------------------------------------------- a valid tiny run
TINY = ["run", "gaussian-paper", "--seeds", "2", "--set", "n_generations=5", "--quiet"]


def _export_rows(run_id: str, out: Path) -> list[list[str]]:
    code, output = _invoke(["export", run_id, "--format", "csv", "--out", str(out)])
    assert code == 0, output
    return list(csv.reader(io.StringIO(output)))


def _only_run(out: Path) -> str:
    runs = [p.name for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """The same tiny run twice: in-process into out1, through a subprocess into out2."""
    root = tmp_path_factory.mktemp("tiny")
    out1, out2 = root / "out1", root / "out2"
    code, output = _invoke([*TINY, "--out", str(out1)])
    assert code == 0, output
    proc = subprocess.run([*_cli_cmd(), *TINY, "--out", str(out2), "--run-id", "second"],
                          cwd=root, capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return out1, out2


def test_tiny_run_export_header_and_rows(tiny_runs):
    out1, _ = tiny_runs
    run_id = _only_run(out1)
    rows = _export_rows(run_id, out1)
    assert rows[0][:12] == EXPORT_HEAD
    body = rows[1:]
    assert body
    col = {name: i for i, name in enumerate(rows[0])}
    assert {r[col["run_id"]] for r in body} == {run_id}
    assert {r[col["seed"]] for r in body} == {"0", "1"}
    gens = {int(r[col["generation"]]) for r in body}
    assert gens == set(range(6))
    metrics = {r[col["metric"]] for r in body}
    assert {"w2-gaussian", "mean_error", "cov_error"} <= metrics
    for r in body:
        if r[col["metric"]] == "w2-gaussian":
            assert math.isfinite(float(r[col["value"]]))


def test_tiny_run_is_listed(tiny_runs):
    out1, _ = tiny_runs
    run_id = _only_run(out1)
    code, output = _invoke(["ls", "--out", str(out1)])
    assert code == 0, output
    line = next(l for l in output.splitlines() if l.startswith(run_id))
    assert "complete" in line


def test_identical_runs_export_identically(tiny_runs):
    out1, out2 = tiny_runs
    a = _export_rows(_only_run(out1), out1)
    b = _export_rows("second", out2)
    assert a[0] == b[0]
    col = {name: i for i, name in enumerate(a[0])}

    def comparable(rows):
        return [r[:col["run_id"]] + r[col["run_id"] + 1:] for r in rows[1:] if not r[col["metric"]].endswith("_seconds")]

    ca, cb = comparable(a), comparable(b)
    assert len(ca) > 0
    assert ca == cb
    assert {r[col["run_id"]] for r in b[1:]} == {"second"}
    # the *_seconds rows exist (so the exclusion above is not what made the tables equal)
    assert any(r[col["metric"]].endswith("_seconds") for r in a[1:])


# ---------------------------------------------------------------------- config files
def test_config_file_with_base_and_overrides(tmp_path):
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(
        "base: gaussian-paper\n"
        "name: mine\n"
        "correction: oracle-ot\n"
        "gamma: [0, 2, .inf]\n"
        "n_generations: 7\n"
    )
    spec = load_spec(str(cfg), ["lambda=[0.25,1]", "model.reg_covar=0.001"], seeds=3)
    # from the file
    assert spec.name == "mine"
    assert spec.corrections == (ComponentSpec("oracle-ot"),)
    assert spec.gammas == (0.0, 2.0, math.inf)
    assert spec.n_generations == 7
    # from --set / direct overrides
    assert spec.lambdas == (0.25, 1.0)
    assert spec.model == ComponentSpec("gaussian", (("reg_covar", 0.001),))
    assert spec.seeds == 3
    # inherited from the preset
    base = load_spec("gaussian-paper")
    assert spec.n_real == base.n_real == 50
    assert spec.policy == base.policy == ComponentSpec("paper-toy")
    assert spec.task == base.task
    assert spec.metrics == base.metrics
    assert spec.checkpoint_every == base.checkpoint_every
    # and the spec round-trips through its own YAML
    again = tmp_path / "again.yaml"
    again.write_text(spec.to_yaml())
    assert load_spec(str(again)) == spec


def test_exponent_without_a_dot_is_a_number(tmp_path):
    """PyYAML (YAML 1.1) reads ``3e-4`` as a string; configs, sweeps and --set read it as 3e-4."""
    from scloop.core.config import apply_overrides, load_raw, load_yaml

    assert load_yaml("a: 3e-4\nb: [1e-2, 1E3]\nc: 2\nd: .inf\ne: abc\nf: 1.5e-3") == {
        "a": 3e-4, "b": [1e-2, 1e3], "c": 2, "d": math.inf, "e": "abc", "f": 1.5e-3}
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("base: digits-quick\nmodel: {name: ddpm, finetune_lr: 3e-4}\n")
    raw = apply_overrides(load_raw(str(cfg)), ["model.lr=2e-4"])
    assert raw["model"]["finetune_lr"] == 3e-4 and raw["model"]["lr"] == 2e-4
    spec = load_spec(str(cfg), overrides=["model.lr=2e-4"])
    assert spec.model.kwargs["finetune_lr"] == 3e-4 and spec.model.kwargs["lr"] == 2e-4
