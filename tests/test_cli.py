"""Command-line conventions: version, stdout for results and stderr for logs (-q / -v), one
option name per idea (with the old names as hidden aliases), export format vs --to, theory's
infinite gamma, preset descriptions, `scloop ls` over runs and sweeps, quiet closed pipes,
--run-id and --plugin checks.

In-process cases use ``typer.testing.CliRunner`` (stdout and stderr are captured apart); the
stdout/stderr split as a shell sees it and the closed pipe run the installed entry point."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import scloop
from scloop.cli import app

TINY = ["run", "gaussian-paper", "--seeds", "1", "--set", "n_generations=3"]
HELP_ENV = {"COLUMNS": "240", "TERM": "dumb", "NO_COLOR": "1"}


def _invoke(args: list[str], **kw):
    return CliRunner().invoke(app, args, **kw)


def _cli_cmd() -> list[str]:
    script = Path(sys.executable).parent / "scloop"
    return [str(script)] if script.exists() else [sys.executable, "-m", "scloop"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SCLOOP_RUNS"}
    env["COLUMNS"] = "200"
    return env


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _table_lines(stdout: str) -> list[str]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines and lines[0].startswith("w2-gaussian at the last generation"), stdout
    assert all("gen " in line and "λ=" in line for line in lines[1:]), stdout
    return lines


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One tiny run and one two-run sweep under one --out."""
    root = tmp_path_factory.mktemp("cli")
    out = root / "runs"
    r = _invoke([*TINY, "--out", str(out), "--run-id", "tiny"])
    assert r.exit_code == 0, r.output
    spec = root / "tiny-sweep.yaml"
    spec.write_text("name: tiny-sweep\ndescription: two tiny Gaussian runs\nbase: gaussian-paper\n"
                    "config: {n_generations: 3, seeds: 1, correction: oracle-mixture, gamma: [0, 1]}\n"
                    "grid:\n  lambda: [0.5, 1.0]\n")
    r = _invoke(["sweep", str(spec), "--workers", "1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


# ---------------------------------------------------------------------- version, logging
def test_version():
    r = _invoke(["--version"])
    assert r.exit_code == 0, r.output
    assert r.stdout == f"scloop {scloop.__version__}\n"


def test_quiet_and_verbose_together_is_an_error():
    r = _invoke(["-q", "-v", "theory"])
    assert r.exit_code == 2
    assert "-q/--quiet" in r.stderr and "-v/--verbose" in r.stderr and r.stdout == ""


def test_logs_on_stderr_results_on_stdout(tmp_path):
    r = _invoke([*TINY, "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    _table_lines(r.stdout)
    assert "run gaussian-paper-" in r.stderr and "engine=" in r.stderr
    assert "engine=" not in r.stdout
    again = _invoke([*TINY, "--out", str(tmp_path)])
    assert again.exit_code == 0, again.output
    assert "already complete" in again.stderr and "already complete" not in again.stdout
    assert again.stdout == r.stdout


@pytest.mark.parametrize("where", ["global", "command"])
def test_quiet_in_process_leaves_only_the_table(where, tmp_path):
    argv = ["-q", *TINY] if where == "global" else [*TINY, "--quiet"]
    r = _invoke([*argv, "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    _table_lines(r.stdout)
    assert r.stderr == ""


def test_logging_state_is_restored_after_a_command(tmp_path):
    logger = logging.getLogger("scloop")
    before = (logger.level, logger.propagate, list(logger.handlers))
    assert _invoke(["-q", "ls", "--out", str(tmp_path)]).exit_code == 0
    assert (logger.level, logger.propagate, list(logger.handlers)) == before


def test_quiet_subprocess_prints_only_the_results_table(tmp_path):
    for argv in (["-q", *TINY], [*TINY, "-q"]):
        proc = subprocess.run([*_cli_cmd(), *argv, "--out", str(tmp_path / "runs")], cwd=tmp_path,
                              capture_output=True, text=True, env=_env(), timeout=120)
        assert proc.returncode == 0, proc.stderr
        _table_lines(proc.stdout)
        assert proc.stderr == ""


def test_importing_scloop_configures_no_handler():
    code = ("import logging, scloop, scloop.cli, scloop.runner; "
            "print(len(logging.getLogger('scloop').handlers), len(logging.getLogger().handlers))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "0"]


# ---------------------------------------------------------------------- option names, help
COMMANDS = [["run"], ["plot"], ["theory"], ["theory-check"], ["ls"], ["export"], ["sweep"], ["report"],
            ["presets"], ["data", "info"], ["data", "download"], ["motion", "check-correction"],
            ["motion", "animate"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_help_shows_plain_flags_and_hides_old_names(cmd):
    r = _invoke([*cmd, "--help"], env=HELP_ENV)
    assert r.exit_code == 0, r.output
    assert "/--no-" not in r.stdout
    for old in ("--jobs", "--processes", "--timing "):
        assert old not in r.stdout
    if cmd in (["run"], ["sweep"], ["motion", "check-correction"]):
        assert "--workers" in r.stdout
    if "--out" in r.stdout:
        assert cmd != ["motion", "animate"]


def test_global_help_lists_global_options():
    r = _invoke(["--help"], env=HELP_ENV)
    assert r.exit_code == 0
    for opt in ("--version", "--quiet", "--verbose", "-q", "-v"):
        assert opt in r.stdout


def test_old_and_new_parallelism_names_conflict(tmp_path):
    r = _invoke(["sweep", "gaussian-phase", "--jobs", "1", "--workers", "2", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert "--jobs" in r.stderr and "--workers" in r.stderr
    assert not (tmp_path / "o").exists()


def test_negative_workers_named(tmp_path):
    r = _invoke(["sweep", "gaussian-phase", "--jobs", "-1", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "--workers" in r.stderr and "-1" in r.stderr
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------- export
@pytest.mark.parametrize("argv,needles", [
    (["--format", "json", "--to", "x.csv"], ["--format json", "x.csv", "csv"]),
    (["--format", "csv", "--to", "x.parquet"], ["--format csv", "x.parquet", "parquet"]),
    (["--to", "x.txt"], ["--to", "x.txt", ".csv", ".parquet"]),
    (["--format", "xml"], ["--format", "xml", "csv | json | parquet"]),
    (["--format", "parquet"], ["--format parquet", "--to"]),
    (["--timing", "--no-timing"], ["--timing", "--no-timing"]),
])
def test_export_format_must_agree_with_to(runs, argv, needles, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = _invoke(["export", "tiny", "--out", str(runs), *argv])
    assert r.exit_code == 2, r.output
    for needle in needles:
        assert needle in r.stderr, r.stderr
    assert r.stdout == "" and list(tmp_path.iterdir()) == []


def test_export_format_follows_to(runs, tmp_path):
    pytest.importorskip("pyarrow")
    import pandas as pd

    pq, csv_, js = tmp_path / "t.parquet", tmp_path / "t.csv", tmp_path / "t.json"
    for to in (pq, csv_, js):
        r = _invoke(["export", "tiny", "--out", str(runs), "--to", str(to)])
        assert r.exit_code == 0, r.output
        assert f"wrote {to}" in r.stderr and r.stdout == ""
    a, b = pd.read_parquet(pq), pd.read_csv(csv_)
    assert len(a) == len(b) > 0 and list(a.columns) == list(b.columns)
    assert isinstance(json.loads(js.read_text()), list)
    r = _invoke(["export", "tiny", "--out", str(runs), "--format", "parquet", "--to", str(tmp_path / "u.pq")])
    assert r.exit_code == 0 and (tmp_path / "u.pq").exists()
    r = _invoke(["export", "tiny", "--out", str(runs), "--no-timing"])
    assert r.exit_code == 0 and "_seconds" not in r.stdout and r.stdout.startswith("run_id,")


# ---------------------------------------------------------------------- theory
@pytest.mark.parametrize("spelling", ["inf", ".inf", "Infinity", "INF"])
def test_theory_accepts_infinite_gamma(spelling):
    r = _invoke(["theory", "--lambda", "0.5", "--gamma", spelling])
    assert r.exit_code == 0, r.output
    rows = [line.split() for line in r.stdout.splitlines() if line.strip().startswith("0.5")]
    assert rows and rows[0][1] == "inf"


@pytest.mark.parametrize("argv,needles", [
    (["--gamma", "abc"], ["--gamma", "'abc'", "inf"]),
    (["--gamma", "-1"], ["--gamma", "'-1'", ">= 0"]),
    (["--gamma", "nan"], ["--gamma", "'nan'"]),
    (["--lambda", "inf"], ["--lambda", "'inf'", "finite"]),
    (["--eps-l-over-alpha", "x"], ["--eps-l-over-alpha", "'x'"]),
])
def test_theory_bad_values_name_the_option(argv, needles):
    r = _invoke(["theory", *argv])
    assert r.exit_code == 2
    for needle in needles:
        assert needle in r.stderr, r.stderr
    assert "Traceback" not in r.output


# ---------------------------------------------------------------------- presets, ls
def test_presets_lists_names_and_descriptions():
    from scloop.core.config import load_raw, preset_names
    from scloop.sweep import load_sweep, sweep_preset_names

    r = _invoke(["presets"])
    assert r.exit_code == 0, r.output
    text = r.stdout
    run_part, _, sweep_part = text.partition("sweep presets")
    assert run_part.startswith("run presets") and sweep_part
    for name in preset_names():
        desc = load_raw(name).get("description")
        assert isinstance(desc, str) and len(desc) > 20, name
        assert "PAPER_NOTES" not in desc and "../shared" not in desc
        line = next(line for line in run_part.splitlines() if line.split()[:1] == [name])
        assert " ".join(desc.split()) in line
    for name in sweep_preset_names():
        desc = load_sweep(name).description
        assert desc, name
        line = next(line for line in sweep_part.splitlines() if line.split()[:1] == [name])
        assert desc in line


def test_sweep_description_must_be_a_string(tmp_path):
    from scloop.core.registry import ConfigError
    from scloop.sweep.spec import sweep_from_dict

    spec = sweep_from_dict({"name": "s", "base": "gaussian-paper", "description": "  two\n words "})
    assert spec.description == "two words"
    with pytest.raises(ConfigError, match="description"):
        sweep_from_dict({"name": "s", "base": "gaussian-paper", "description": ["x"]})


def test_ls_shows_runs_and_sweeps(runs):
    legacy = runs / "legacy"
    legacy.mkdir(exist_ok=True)
    (legacy / "status.json").write_text(json.dumps({"state": "failed", "n_units": 3}))
    r = _invoke(["ls", "--out", str(runs)])
    assert r.exit_code == 0, r.output
    lines = {line.split()[0]: line for line in r.stdout.splitlines()}
    assert {"NAME", "tiny", "tiny-sweep", "legacy"} <= set(lines)
    header = lines["NAME"]
    for col in ("KIND", "STATE", "CREATED", "LAST END", "VERSION"):
        assert col in header
    tiny = lines["tiny"].split()
    assert tiny[1:3] == ["run", "complete"]
    if (runs / "tiny" / "provenance.json").exists():
        assert scloop.__version__ in tiny
    sw = lines["tiny-sweep"]
    assert sw.split()[1:3] == ["sweep", "complete"] and "runs 2: 2 complete" in sw
    leg = lines["legacy"].split()
    assert leg[1:3] == ["run", "failed"] and leg[3:6] == ["-", "-", "-"]


def test_ls_of_nothing(tmp_path):
    r = _invoke(["ls", "--out", str(tmp_path / "none")])
    assert r.exit_code == 0 and r.stdout == "" and "no runs" in r.stderr


# ---------------------------------------------------------------------- closed pipe
def _first_line_then_close(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    p = subprocess.Popen([*_cli_cmd(), *argv], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=_env())
    first = p.stdout.readline().decode()
    p.stdout.close()
    err = p.stderr.read().decode()
    p.wait(timeout=120)
    return p.returncode, first, err


@pytest.mark.parametrize("which", ["theory", "export", "presets"])
def test_closed_pipe_is_quiet(which, runs, tmp_path):
    argv = {"theory": ["theory", *[a for i in range(2000) for a in ("--lambda", str(0.001 * (i + 1)))]],
            "export": ["export", "tiny", "--out", str(runs)],
            "presets": ["presets"]}[which]
    code, first, err = _first_line_then_close(argv, tmp_path)
    assert first.strip()
    assert err == ""
    assert code in (0, 141)


# ---------------------------------------------------------------------- run ids, plugins
@pytest.mark.parametrize("bad", ["../x", "a/b", "..", ""])
def test_bad_run_id_exits_2_and_writes_nothing(bad, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    r = _invoke([*TINY, "--out", "runs", "--run-id", bad])
    assert r.exit_code == 2, r.output
    assert "--run-id" in r.stderr and repr(bad) in r.stderr
    assert _snapshot(tmp_path) == before


def test_plugin_file_is_loaded_relative_to_the_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "myplug.py").write_text("import os\nos.environ['SCLOOP_TEST_PLUGIN_LOADED'] = '1'\n")
    monkeypatch.delenv("SCLOOP_TEST_PLUGIN_LOADED", raising=False)
    r = _invoke([*TINY, "--out", "runs", "--plugin", "myplug.py", "-q"])
    assert r.exit_code == 0, r.output
    assert os.environ.get("SCLOOP_TEST_PLUGIN_LOADED") == "1"


@pytest.mark.parametrize("cmd", [TINY, ["sweep", "gaussian-phase"]], ids=["run", "sweep"])
@pytest.mark.parametrize("ref,text", [("missing.py", None), ("broken.py", "raise RuntimeError('boom')\n"),
                                      ("no_such_scloop_plugin_module", None)])
def test_bad_plugin_exits_2_and_writes_nothing(cmd, ref, text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if text is not None:
        (tmp_path / ref).write_text(text)
    before = _snapshot(tmp_path)
    r = _invoke([*cmd, "--out", "runs", "--plugin", ref])
    assert r.exit_code == 2, r.output
    assert ref in r.stderr and "Traceback" not in r.output
    assert _snapshot(tmp_path) == before


def test_report_data_dir_is_checked_and_used(tmp_path, monkeypatch):
    """``report --data-dir``: a missing folder is a named error and nothing is written; an
    existing one is handed to what the report reads (as SCLOOP_DATA_DIR)."""
    out = tmp_path / "runs"
    scloop.run({"task": "gaussian", "correction": "oracle-mixture", "gamma": [1], "n_generations": 3, "seeds": 2},
               out=out, run_id="r", quiet=True)
    r = _invoke(["report", "r", "--out", str(out), "--data-dir", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "--data-dir" in r.output and "nope" in r.output
    assert not (out / "r" / "report").exists()
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("SCLOOP_DATA_DIR", str(tmp_path))  # restored after the test (the CLI sets it)
    r = _invoke(["report", "r", "--out", str(out), "--data-dir", str(data)])
    assert r.exit_code == 0, r.output
    assert (out / "r" / "report" / "index.html").exists()
    assert os.environ["SCLOOP_DATA_DIR"] == str(data.resolve())
