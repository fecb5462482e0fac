"""The README's configuration table names every setting, and only real ones (the server's
settings, plus the client's own two variables)."""

from __future__ import annotations

import re
from pathlib import Path

from stillmotion.config import Settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CLIENT = ROOT / "src" / "stillmotion" / "client"


def test_every_setting_is_in_the_readme_table_and_every_row_is_a_setting():
    text = README.read_text()
    documented = set(re.findall(r"`STILLMOTION_([A-Z0-9_]+)`", text))
    settings = {name.upper() for name in Settings.model_fields}
    client = {
        name
        for path in CLIENT.glob("*.py")
        for name in re.findall(r"STILLMOTION_([A-Z0-9_]+)", path.read_text())
    }
    assert client == {"URL", "API_KEY"}
    documented -= client
    assert settings - documented == set(), "settings missing from README.md's table"
    assert documented - settings == set(), "README.md names variables that do not exist"
