"""The service catalogue: the operator's TOML file read into typed, frozen specs, and a bad file
refused with one line naming the file, the table and the field."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import pytest

from stillmotion import options
from stillmotion.services import catalogue
from stillmotion.services.catalogue import CatalogueError, ProviderKind

KEY = "key_" + "0123456789abcdef" * 8
ENV = {"RUNWAYML_API_SECRET": KEY}
ISSUE_EXAMPLE = """\
[services.runway-i2v]
provider = "runway"
model = "gen4_turbo"                          # Runway's model id
base_url = "https://api.dev.runwayml.com"     # the default; any Runway-compatible API
api_key_env = "RUNWAYML_API_SECRET"           # the key is read from this variable, never from the file
[services.local]
provider = "local"
"""  # noqa: E501 (as the issue writes it)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "services.toml"
    path.write_text(text)
    return path


def test_the_issue_example_loads_as_written(tmp_path):
    path = write(tmp_path, ISSUE_EXAMPLE)
    cat = catalogue.load(path, environ=ENV)
    assert cat.ids == ("runway-i2v", "local")
    assert cat.source == path
    runway = cat.get("runway-i2v")
    assert runway is not None and runway.provider is ProviderKind.RUNWAY
    settings = runway.settings
    assert isinstance(settings, catalogue.RunwaySettings)
    assert settings.model == "gen4_turbo"
    assert settings.base_url == "https://api.dev.runwayml.com"
    assert settings.api_key == KEY and settings.api_key_env == "RUNWAYML_API_SECRET"
    assert settings.poll_interval == 5.0
    # Today's clients send gen-2/3/4 (gen-3 by default): all go to the one model.
    assert runway.versions == options.VERSIONS
    assert dict(settings.models) == dict.fromkeys(options.VERSIONS, "gen4_turbo")
    assert runway.aspect_ratios == ("16:9", "9:16", "1:1")
    assert runway.durations == tuple(range(2, 11))
    assert dict(runway.prices) == {"gen-2": 2, "gen-3": 5, "gen-4": 20}
    assert runway.options == frozenset({"seed"})
    local = cat.get("local")
    assert local is not None and local.provider is ProviderKind.LOCAL
    assert local.options == frozenset({"camera", "motion_brush", "loop", "seed"})
    assert isinstance(local.settings, catalogue.LocalSettings)
    assert cat.get("nope") is None and "local" in cat and len(cat) == 2


def test_the_key_never_shows_in_a_repr(tmp_path):
    cat = catalogue.load(write(tmp_path, ISSUE_EXAMPLE), environ=ENV)
    assert KEY not in repr(cat)
    assert "RUNWAYML_API_SECRET" in repr(cat)


def test_specs_are_frozen(tmp_path):
    spec = catalogue.load(write(tmp_path, ISSUE_EXAMPLE), environ=ENV).get("local")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.description = "changed"  # type: ignore[misc, union-attr]
    with pytest.raises(TypeError):
        spec.prices["gen-2"] = 0  # type: ignore[index, union-attr]


def test_without_a_file_runway_i2v_is_the_local_engine():
    cat = catalogue.load(None, environ={})
    assert cat.ids == ("runway-i2v",)
    spec = cat.get("runway-i2v")
    assert spec is not None and spec.provider is ProviderKind.LOCAL
    assert spec.versions == options.VERSIONS and spec.aspect_ratios == options.ASPECT_RATIOS
    assert spec.durations == tuple(range(options.DURATION_MIN, options.DURATION_MAX + 1))
    assert dict(spec.prices) == {"gen-2": 2, "gen-3": 5, "gen-4": 20}
    assert cat.source is None


def test_default_prices_come_from_the_caller():
    cat = catalogue.load(None, default_prices={"gen-2": 1, "gen-3": 3, "gen-4": 9})
    assert dict(cat.get("runway-i2v").prices) == {"gen-2": 1, "gen-3": 3, "gen-4": 9}  # type: ignore[union-attr]


def test_every_setting_is_read(tmp_path):
    path = write(
        tmp_path,
        """
[services.runway-fast]
provider = "runway"
description = "Runway Gen-4 Turbo"
model = "gen4_turbo"
versions = {"gen-4" = "gen4_turbo", "gen4.5" = "gen4.5"}
base_url = "http://127.0.0.2:9999/runway/"
api_key_env = "MY_KEY"
poll_interval = 0.5
deadline_seconds = 30
request_timeout = 7
allowed_output_hosts = ["*.cloudfront.net", "cdn.example.com"]
output_networks = ["127.0.0.2/32"]
max_output_bytes = 1000000
download_timeout = 9
unavailable_seconds = 60
aspect_ratios = ["16:9", "1:1"]
durations = {min = 5, max = 8}
prices = {"gen-4" = 30, "gen4.5" = 45}
options = ["seed"]

[services.engine]
provider = "local"
versions = ["gen-2"]
durations = [2, 4]
options = []
""",
    )
    cat = catalogue.load(path, environ={"MY_KEY": "  k  "}, default_prices={"gen-2": 1})
    runway = cat.get("runway-fast")
    assert runway is not None
    s = runway.settings
    assert isinstance(s, catalogue.RunwaySettings)
    assert runway.description == "Runway Gen-4 Turbo"
    assert runway.versions == ("gen-4", "gen4.5")
    assert dict(s.models) == {"gen-4": "gen4_turbo", "gen4.5": "gen4.5"}
    assert s.base_url == "http://127.0.0.2:9999/runway" and s.api_key == "k"
    assert (s.poll_interval, s.deadline_seconds, s.request_timeout) == (0.5, 30.0, 7.0)
    assert s.allowed_output_hosts == ("*.cloudfront.net", "cdn.example.com")
    assert s.output_networks == (ipaddress.ip_network("127.0.0.2/32"),)
    assert (s.max_output_bytes, s.download_timeout, s.unavailable_seconds) == (1000000, 9.0, 60)
    assert runway.aspect_ratios == ("16:9", "1:1") and runway.durations == (5, 6, 7, 8)
    assert dict(runway.prices) == {"gen-4": 30, "gen4.5": 45}
    engine = cat.get("engine")
    assert engine is not None
    assert engine.versions == ("gen-2",) and engine.durations == (2, 4)
    assert engine.options == frozenset() and dict(engine.prices) == {"gen-2": 1}


def test_a_runway_model_narrows_the_defaults(tmp_path):
    path = write(tmp_path, '[services.veo]\nprovider = "runway"\nmodel = "veo3.1"\n')
    spec = catalogue.load(path, environ=ENV).get("veo")
    assert spec is not None
    assert spec.aspect_ratios == ("16:9", "9:16") and spec.durations == (4, 6, 8)


def test_end_frame_only_where_the_model_takes_one(tmp_path):
    path = write(
        tmp_path,
        '[services.veo]\nprovider = "runway"\nmodel = "veo3.1"\noptions = ["seed", "end_frame"]\n',
    )
    spec = catalogue.load(path, environ=ENV).get("veo")
    assert spec is not None and spec.options == frozenset({"seed", "end_frame"})


def test_diffusion_is_accepted_with_its_settings_passed_through(tmp_path):
    path = write(
        tmp_path,
        """
[services.open-i2v]
provider = "diffusion"
versions = ["wan-2.1"]
prices = {"wan-2.1" = 3}
model_dir = "/models/wan"
pipeline = {steps = 30, guidance = 5.0}
""",
    )
    spec = catalogue.load(path, environ={}).get("open-i2v")
    assert spec is not None and spec.provider is ProviderKind.DIFFUSION
    assert isinstance(spec.settings, catalogue.DiffusionSettings)
    assert spec.settings.model_dir == "/models/wan"
    assert dict(spec.settings.pipeline) == {"steps": 30, "guidance": 5.0}
    assert spec.versions == ("wan-2.1",) and dict(spec.prices) == {"wan-2.1": 3}


BAD = [
    (
        ISSUE_EXAMPLE,
        {},
        "[services.runway-i2v] api_key_env: RUNWAYML_API_SECRET is not set",
    ),
    ('[services.x]\nprovider = "kling"\n', {}, "[services.x] provider: unknown provider 'kling'"),
    ("[services.x]\n", {}, "[services.x] provider: is required"),
    (
        '[services.x]\nprovider = "local"\nmodel = "gen4_turbo"\n',
        {},
        "[services.x] model: unknown key",
    ),
    (
        '[services.x]\nprovider = "local"\ndescription = 3\n',
        {},
        "[services.x] description: must be a string, not an integer",
    ),
    (
        '[services.x]\nprovider = "local"\nversions = "gen-2"\n',
        {},
        "[services.x] versions: must be a list of strings",
    ),
    (
        '[services.x]\nprovider = "local"\nversions = ["gen-9"]\n',
        {},
        "[services.x] versions: unknown version 'gen-9'",
    ),
    (
        '[services.x]\nprovider = "local"\naspect_ratios = ["4:3"]\n',
        {},
        "[services.x] aspect_ratios: '4:3' is not one of 16:9, 9:16, 1:1",
    ),
    (
        '[services.x]\nprovider = "local"\ndurations = [1]\n',
        {},
        "[services.x] durations: 1 is not one of 2…10",
    ),
    (
        '[services.x]\nprovider = "local"\ndurations = {min = 8, max = 3}\n',
        {},
        "[services.x] durations: min 8 is more than max 3",
    ),
    (
        '[services.x]\nprovider = "local"\ndurations = "5"\n',
        {},
        "[services.x] durations: must be a list or {min, max}",
    ),
    (
        '[services.x]\nprovider = "local"\nprices = {"gen-5" = 1}\n',
        {},
        "[services.x] prices: 'gen-5' is not a version of this service",
    ),
    (
        '[services.x]\nprovider = "local"\nprices = {"gen-2" = -1}\n',
        {},
        "[services.x] prices: gen-2: credits per second",
    ),
    (
        '[services.x]\nprovider = "local"\nprices = {"gen-2" = 1.5}\n',
        {},
        "[services.x] prices: gen-2: credits per second",
    ),
    (
        '[services.x]\nprovider = "local"\noptions = ["zoom"]\n',
        {},
        "[services.x] options: unknown option 'zoom'",
    ),
    (
        '[services.x]\nprovider = "local"\noptions = ["end_frame"]\n',
        {},
        "[services.x] options: provider 'local' cannot take 'end_frame'",
    ),
    (
        '[services.r]\nprovider = "runway"\nmodel = "gen4_turbo"\noptions = ["motion_brush"]\n',
        ENV,
        "[services.r] options: provider 'runway' cannot take 'motion_brush'",
    ),
    (
        '[services.r]\nprovider = "runway"\nmodel = "gen4_turbo"\noptions = ["end_frame"]\n',
        ENV,
        "[services.r] options: Runway's gen4_turbo takes no end frame",
    ),
    ('[services.r]\nprovider = "runway"\n', ENV, "[services.r] model: is required"),
    (
        '[services.r]\nprovider = "runway"\nmodel = "gen3_alphaturbo"\n',
        ENV,
        "[services.r] model: unknown Runway model 'gen3_alphaturbo'",
    ),
    (
        '[services.r]\nprovider = "runway"\nmodel = "gen4_turbo"\nversions = ["x y"]\n',
        ENV,
        "[services.r] versions: 'x y' is not a version name",
    ),
    (
        '[services.r]\nprovider = "runway"\nmodel = "gen4_turbo"\nversions = ["gen-5"]\n',
        ENV,
        "[services.r] prices: no price for version 'gen-5'",
    ),
    (
        '[services.r]\nprovider = "runway"\nmodel = "gen4_turbo"\napi_key = "key_x"\n',
        ENV,
        "[services.r] api_key: keys are not read from the file",
    ),
    (
        '[services.r]\nprovider = "runway"\nmodel = "gen4_turbo"\nbase_url = "ftp://x"\n',
        ENV,
        "[services.r] base_url: 'ftp://x' is not an http(s) URL with a host",
    ),
    (
        '[services.r]\nprovider = "runway"\nmodel = "gen4_turbo"\npoll_interval = 0\n',
        ENV,
        "[services.r] poll_interval: must be more than 0, not 0",
    ),
    (
        '[services.r]\nprovider = "runway"\nmodel = "gen4_turbo"\npoll_interval = "5"\n',
        ENV,
        "[services.r] poll_interval: must be a number, not a string",
    ),
    (
        '[services.r]\nprovider = "runway"\nmodel = "gen4_turbo"\noutput_networks = ["nope"]\n',
        ENV,
        "[services.r] output_networks: 'nope' is not a network (CIDR)",
    ),
    (
        '[services.r]\nprovider = "runway"\nmodel = "gen4_turbo"\nallowed_output_hosts = ["http://x"]\n',
        ENV,
        "[services.r] allowed_output_hosts: 'http://x' is not a host name",
    ),
    (
        '[services.r]\nprovider = "runway"\nmodel = "gen4_turbo"\napi_key_env = "1 BAD"\n',
        ENV,
        "[services.r] api_key_env: '1 BAD' is not an environment variable name",
    ),
    (
        '[services.r]\nprovider = "runway"\nmodel = "veo3.1"\naspect_ratios = ["1:1"]\n',
        ENV,
        "[services.r] aspect_ratios: '1:1' is not one of 16:9, 9:16",
    ),
    (
        '[services.r]\nprovider = "runway"\nmodel = "veo3.1"\ndurations = [5]\n',
        ENV,
        "[services.r] durations: 5 is not one of 4, 6, 8",
    ),
    (
        '[services.d]\nprovider = "diffusion"\nmodel_dir = 3\n',
        {},
        "[services.d] model_dir: must be a string",
    ),
    (
        '[services.d]\nprovider = "diffusion"\nsteps = 3\n',
        {},
        "[services.d] steps: unknown key for provider 'diffusion'",
    ),
    ('[services."bad id!"]\nprovider = "local"\n', {}, "[services.bad id!]: a service id is"),
    ('title = "mine"\n[services.x]\nprovider = "local"\n', {}, "title: unknown key"),
    ("", {}, "[services]: no [services.<id>] table"),
    ("[services.x\n", {}, "not valid TOML"),
]


@pytest.mark.parametrize(("text", "environ", "expected"), BAD)
def test_a_bad_file_is_one_line_naming_file_table_and_field(tmp_path, text, environ, expected):
    path = write(tmp_path, text)
    with pytest.raises(CatalogueError) as info:
        catalogue.load(path, environ=environ)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert expected in message, message
    assert "\n" not in message


def test_a_missing_file_is_named(tmp_path):
    path = tmp_path / "absent.toml"
    with pytest.raises(CatalogueError, match=r"absent\.toml: cannot be read: No such file"):
        catalogue.load(path)
