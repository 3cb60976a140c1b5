"""The bench's helper tools: the in-process engine measurement and the checkout that bench.compare runs."""

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # bench/ is not part of the installed package

from bench import compare, engine  # noqa: E402


def test_bench_engine_runs_every_config_through_the_real_chain(capsys):
    assert engine.main(["--requests", "2000"]) == 0  # it exits with an error if any answer is not a 200
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == ["bare", "full", "full-jwt"]
    assert all("µs/request" in line for line in out)


def test_bench_engine_refuses_an_unknown_config(capsys):
    with pytest.raises(SystemExit) as exc:
        engine.main(["nonsense"])
    assert exc.value.code == 2 and "unknown config(s): nonsense" in capsys.readouterr().err


def test_bench_compare_side_a_imports_the_checked_out_ref_not_the_installed_code():
    with tempfile.TemporaryDirectory() as tmp:
        tree = compare.checkout("HEAD", Path(tmp))
        try:
            compare.assert_imports_from(tree)  # raises SystemExit naming the files otherwise
            code = "import gateway_engine_plugins.rate_limit as m; print(m.__file__)"
            found = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, check=True)
            assert Path(found.stdout.strip()).resolve().is_relative_to(tree.resolve())
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)
