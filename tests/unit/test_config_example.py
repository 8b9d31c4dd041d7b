"""config.example.yml stays true: it is valid and documents every setting."""

from pathlib import Path

import yaml

from ociregistry.config import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yml"


def _keys(value, prefix=""):
    if isinstance(value, dict):
        for key, inner in value.items():
            yield f"{prefix}{key}"
            yield from _keys(inner, f"{prefix}{key}.")


def test_example_is_valid_and_equals_the_defaults():
    settings = load_settings(str(EXAMPLE), environ={})
    assert settings == Settings()


def test_example_names_every_setting():
    documented = set(_keys(yaml.safe_load(EXAMPLE.read_text())))
    expected = set(_keys(Settings().model_dump()))
    assert expected - documented == set()
