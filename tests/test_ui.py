"""The Streamlit page, driven headless with streamlit.testing (random weights, fp32)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import index_once

st_testing = pytest.importorskip("streamlit.testing.v1")

APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")


def _app(monkeypatch: pytest.MonkeyPatch, data_dir: Path):  # noqa: ANN202
    monkeypatch.setenv("SEARCHAPP_DATA_DIR", str(data_dir))
    monkeypatch.setenv("SEARCHAPP_WEIGHTS", "random")
    monkeypatch.setenv("SEARCHAPP_PRECISION", "fp32")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return st_testing.AppTest.from_file(APP, default_timeout=120)


def _texts(at) -> str:  # noqa: ANN001
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [i.value for i in at.info] + [w.value for w in at.warning]
    return "\n".join(str(p) for p in parts)


def _result_names(at) -> list[str]:  # noqa: ANN001
    return [m.value.strip("*") for m in at.markdown if m.value.startswith("**")]


@pytest.fixture()
def library(settings, embedder, photos):  # noqa: ANN001, ANN201
    index_once(settings, embedder, photos)
    return settings


def test_empty_library_shows_how_to_index(monkeypatch, tmp_path) -> None:  # noqa: ANN001
    at = _app(monkeypatch, tmp_path / "empty").run()
    assert not at.exception
    assert "searchapp index PATH" in _texts(at)
    assert at.warning, "random-weights banner missing"
    assert "Random model weights" in at.warning[0].value


def test_text_search_and_more_like_this(monkeypatch, library) -> None:  # noqa: ANN001
    at = _app(monkeypatch, library.data_dir).run()
    assert not at.exception
    assert "Random model weights" in at.warning[0].value
    assert "searchapp index PATH" not in _texts(at)

    at.text_input(key="query").input("a cat").run()
    assert not at.exception
    first = _result_names(at)
    assert len(first) >= 4
    assert len(at.columns) >= 4
    assert any(b.key.startswith("like-") for b in at.button)
    assert at.expander, "status expander missing"

    target = next(b for b in at.button if b.key.startswith("like-"))
    at.button(key=target.key).click().run()
    assert not at.exception
    assert any(s.value.startswith("More like") for s in at.subheader)
    second = _result_names(at)
    assert second and second != first
    # the photo itself is left out of "more like this"
    pid = int(target.key.split("-", 1)[1])
    assert f"like-{pid}" not in [b.key for b in at.button]


def test_cli_ui_runs_streamlit_on_localhost(monkeypatch, tmp_path) -> None:  # noqa: ANN001
    import subprocess

    from searchapp import cli

    seen = {}

    def fake_call(cmd, env=None, **kw):  # noqa: ANN001, ANN003, ANN202
        seen["cmd"], seen["env"], seen["kw"] = cmd, env, kw
        return 0

    monkeypatch.setattr(subprocess, "call", fake_call)
    rc = cli.main(
        ["--data-dir", str(tmp_path / "lib"), "--weights", "random", "ui", "--port", "9999"]
    )
    assert rc == 0
    cmd = seen["cmd"]
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("app.py")
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.port") + 1] == "9999"
    assert cmd[cmd.index("--browser.gatherUsageStats") + 1] == "false"
    assert cmd[cmd.index("--server.maxUploadSize") + 1] == "20"
    assert "shell" not in seen["kw"]
    assert seen["env"]["SEARCHAPP_DATA_DIR"] == str((tmp_path / "lib").resolve())
    assert seen["env"]["SEARCHAPP_WEIGHTS"] == "random"


def test_sidebar_filter_count_and_failures(monkeypatch, settings, embedder, photos) -> None:  # noqa: ANN001
    sub = photos / "sub"
    sub.mkdir()
    for name in ("coffee.png", "rocket.jpg"):
        (photos / name).rename(sub / name)
    (photos / "broken.jpg").write_bytes(b"not a jpeg at all")
    index_once(settings, embedder, photos)

    at = _app(monkeypatch, settings.data_dir).run()
    at.text_input(key="query").input("a cup").run()
    at.number_input(key="k").set_value(3).run()
    assert not at.exception
    assert len(_result_names(at)) == 3

    folder = next(o for o in at.selectbox(key="folder").options if o.endswith("sub"))
    at.selectbox(key="folder").set_value(folder).run()
    at.number_input(key="k").set_value(20).run()
    assert not at.exception
    assert sorted(_result_names(at)) == ["coffee.png", "rocket.jpg"]

    status = at.expander[0]
    assert "1 failed" in status.label
    assert any("broken.jpg" in t.value for t in status.text)


def test_image_upload_searches_by_image(monkeypatch, library, photos) -> None:  # noqa: ANN001
    at = _app(monkeypatch, library.data_dir).run()
    data = (photos / "coffee.png").read_bytes()
    at.file_uploader(key="upload").set_value(("query.png", data, "image/png")).run()
    assert not at.exception
    assert any(s.value == "Like query.png" for s in at.subheader)
    names = _result_names(at)
    assert names and names[0] == "coffee.png"  # the same image is its own best match
