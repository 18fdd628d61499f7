"""Without the development tools installed (the product's image), `wavecast fake` and
`wavecast bench` say how to get them in one line instead of failing on an import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Runs the CLI with `wavecast_tools` made unimportable, as in an image without it.
HIDE_TOOLS = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "wavecast_tools" or name.startswith("wavecast_tools."):
            raise ModuleNotFoundError(name)
        return None
sys.meta_path.insert(0, Hide())
from app.cli import main
sys.argv = ["wavecast", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("command", [["fake", "fcm"], ["bench", "kill"]])
def test_without_the_tools_the_command_says_how_to_get_them(
    tmp_path: Path, command: list[str]
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", HIDE_TOOLS, *command],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "WAVECAST_DATA_DIR": str(tmp_path)},
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"wavecast {command[0]}: ")
    assert "pip install -e tools/" in lines[0]


def test_the_product_package_holds_no_tooling() -> None:
    import app

    product = Path(app.__file__).parent
    assert not (product / "fakes").exists()
    assert not (product / "bench").exists()
