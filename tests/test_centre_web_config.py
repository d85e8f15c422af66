"""The centre config's [web] and [station."ID"] tables: defaults, and each mistake named by
file, key and value (centre/web_config.py through centre.serve_config.load)."""

from __future__ import annotations

from pathlib import Path

import pytest

from centre.serve_config import ConfigError, load


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "centre.toml"
    path.write_text('centre_dir = "."\n' + text)
    return path


def test_nothing_is_public_by_default(tmp_path: Path) -> None:
    cfg = load(config(tmp_path, '[station."A"]\npublic_channels = ["PM10"]\n'))
    assert cfg.web.public == {} and cfg.web.listen is None
    assert cfg.web.password_path(cfg.centre_dir) == tmp_path / "web.passwd"
    cfg = load(config(tmp_path, '[web]\nlisten = "127.0.0.1:8090"\npassword_file = "pw"\n'
                                '[station."A"]\npublic = true\npublic_channels = ["PM10"]\n'))
    assert cfg.web.listen == "127.0.0.1:8090" and cfg.web.password_file == tmp_path / "pw"
    assert cfg.web.public["A"].channels == ("PM10",) and cfg.web.public["A"].name == "A"


@pytest.mark.parametrize(("text", "key", "shown"), [
    ('[web]\nlisten = "8090"\n', "web.listen", "'8090'"),
    ("[web]\npublic_requests_per_min = 0\n", "web.public_requests_per_min", "0"),
    ("[web]\nport = 1\n", "web.port", "1"),
    ('[station."A"]\npublic = "yes"\n', 'station."A".public', "'yes'"),
    ('[station."A"]\npublik = true\n', 'station."A".publik', "True"),
    ('[station."A"]\npublic_channels = [1]\n', 'station."A".public_channels', "[1]"),
    ("station = 5\n", "station", "5"),
])
def test_each_mistake_is_named(tmp_path: Path, text: str, key: str, shown: str) -> None:
    path = config(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load(path)
    assert err.value.file == str(path) and err.value.key == key, str(err.value)
    assert shown in str(err.value)


def test_centre_web_refuses_without_listen_or_password(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edge_agent.daemon.cli import main

    path = config(tmp_path, "")
    assert main(["centre", "web", "--config", str(path)]) != 0
    err = capsys.readouterr().err
    assert "no [web] listen and no --listen" in err and str(path) in err
    assert main(["centre", "web", "--config", str(path), "--listen", "127.0.0.1:0"]) != 0
    err = capsys.readouterr().err
    assert f"{tmp_path / 'web.passwd'}: no password set" in err
    assert "quantrac centre web passwd --config" in err
    assert main(["centre", "web", "--config", str(path), "--listen", "nowhere"]) != 0
    assert "--listen: 'nowhere' is not HOST:PORT" in capsys.readouterr().err
