"""The command line: user errors are one line, bugs keep their traceback, third-party noise is filtered."""

from __future__ import annotations

import argparse
import logging
import warnings

import pytest

from depthq import cli, terminal
from depthq.errors import ConfigError, DepthqError


def _raise(exc: BaseException):
    def func(args):
        raise exc
    return func


def _subcommands(parser):
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


@pytest.fixture()
def parser_with(monkeypatch):
    def make(exc: BaseException):
        original = cli.build_parser

        def build():
            parser = original()
            _subcommands(parser)["capacity"].set_defaults(func=_raise(exc))
            return parser

        monkeypatch.setattr(cli, "build_parser", build)
    return make


def test_a_user_error_is_one_line_with_status_2(parser_with, capsys):
    parser_with(ConfigError("train.steps must be an int >= 1, got 0"))
    assert cli.main(["capacity"]) == 2
    err = capsys.readouterr().err
    assert err == "depthq: error: train.steps must be an int >= 1, got 0\n"


def test_verbose_shows_the_traceback_of_a_user_error(parser_with, capsys):
    parser_with(ConfigError("bad"))
    assert cli.main(["-v", "capacity"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().endswith("depthq: error: bad")


@pytest.mark.parametrize("exc", [ValueError("a bug"), TypeError("a bug"), KeyError("a bug")])
def test_any_other_exception_is_a_bug_and_propagates(parser_with, exc):
    parser_with(exc)
    with pytest.raises(type(exc)):
        cli.main(["capacity"])


def test_user_errors_are_also_the_builtin_exceptions_callers_expect():
    from depthq.errors import MissingFileError, RunDirError

    assert issubclass(ConfigError, ValueError) and issubclass(MissingFileError, FileNotFoundError)
    assert issubclass(RunDirError, FileExistsError) and issubclass(ConfigError, DepthqError)


def test_library_input_errors_reach_the_terminal_as_one_line(capsys, tmp_path):
    assert cli.main(["capacity", "-M", "0"]) == 2
    assert capsys.readouterr().err.startswith("depthq: error: num_codebooks must be an int >= 1")
    (tmp_path / "c.yaml").write_text("")
    assert cli.main(["train", "-c", str(tmp_path / "c.yaml"), "--print-config"]) == 2
    assert "is empty" in capsys.readouterr().err
    assert cli.main(["train", "--set", "train.steps=3.0", "--print-config"]) == 2
    assert "write 3" in capsys.readouterr().err


def test_quiet_terminal_drops_tips_and_third_party_info_keeps_ours():
    keep = terminal.QuietThirdParty(verbose=False)

    def record(name, level, msg):
        return logging.LogRecord(name, level, __file__, 1, msg, None, None)

    assert not keep.filter(record("lightning.pytorch.utilities.rank_zero", logging.INFO,
                                  "💡 Tip: For seamless cloud logging, try installing [litlogger]"))
    assert not keep.filter(record("lightning.pytorch.accelerators.cuda", logging.INFO, "GPU available: False"))
    assert keep.filter(record("lightning.pytorch.trainer", logging.WARNING, "a real warning"))
    assert keep.filter(record("depthq.train.run", logging.INFO, "training dq (51,596 parameters)"))
    assert terminal.QuietThirdParty(verbose=True).filter(record("lightning.pytorch", logging.INFO, "GPU available"))


def test_known_third_party_warnings_are_filtered_ours_are_not():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        terminal.quiet_terminal(verbose=False)
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", DeprecationWarning)
        warnings.warn("Total length of `list` across ranks is zero. Please make sure this was your intention.")
        warnings.warn("depthq: something the user should see")
    assert [str(w.message) for w in caught] == ["depthq: something the user should see"]


def test_errors_is_a_leaf_module():
    import subprocess
    import sys

    code = "import sys, depthq.errors; print(sorted(m for m in sys.modules if m.startswith(('depthq', 'torch'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['depthq', 'depthq.errors', 'depthq.version']"


def test_help_of_every_command_imports_no_torch():
    """`depthq --help` and every subcommand's help build the parsers without importing torch."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from depthq.cli import build_parser, main\n"
        "names = sorted(a for a in build_parser()._subparsers._group_actions[0].choices)\n"
        "for args in [['--help']] + [[n, '--help'] for n in names]:\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(len(names), 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    count, torch_loaded = out.strip().splitlines()[-1].split()
    assert int(count) >= 6 and torch_loaded == "False"
