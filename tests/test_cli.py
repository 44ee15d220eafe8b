import subprocess
import sys


def test_python_dash_m_prints_version():
    out = subprocess.run([sys.executable, "-m", "maskingnet", "version"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("maskingnet ")


def test_help_lists_verbs():
    out = subprocess.run([sys.executable, "-m", "maskingnet", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "version" in out.stdout
