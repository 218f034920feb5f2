import subprocess
import sys

from tsfm_cli import __version__


def test_version(tsfm):
    result = tsfm("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"tsfm {__version__}"


def test_help_lists_usage(tsfm):
    result = tsfm("--help")
    assert result.returncode == 0
    assert "Usage" in result.stdout


def test_cli_import_does_not_pull_in_torch():
    code = "import sys, tsfm_cli.cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
