"""The studio's API through real HTTP: uvicorn on a free loopback port, raw requests (no URL clean-up)."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import call, decode, get_json, post
from postergen.web.app import create_app, running

SECRET = "top secret, outside every run"


@pytest.fixture(scope="module")
def runs_root(tiny_run: Path, tmp_path_factory) -> Path:
    """Two runs, a run with a broken config, a folder that is not a run, and a file that must never be served."""
    root = tmp_path_factory.mktemp("studio") / "runs"
    for name in ("alpha", "beta"):
        shutil.copytree(tiny_run, root / name)
    (root / "broken").mkdir()
    (root / "broken" / "config.json").write_text("{not json")
    (root / "notes").mkdir()
    (root / "secret.txt").write_text(SECRET)
    (root / "beta" / "samples" / "step-0000000.png").symlink_to(root / "secret.txt")  # a link out of the run
    return root


@pytest.fixture(scope="module")
def studio(runs_root: Path):
    app = create_app(runs_root, device="cpu")
    with running(app) as base:
        yield base, app


@pytest.fixture(scope="module")
def base(studio) -> str:
    return studio[0]


class GatedUpscaler:
    """A stand-in upscaler (2x nearest neighbour) that waits while its gate is closed: holds a request open
    (the test that closes the gate opens it again, however it ends; the timeout only bounds a lost test)."""

    def __init__(self) -> None:
        self.entered, self.gate = threading.Event(), threading.Event()
        self.gate.set()

    def __call__(self, images):
        self.entered.set()
        self.gate.wait(timeout=600)
        return images.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


@pytest.fixture(scope="module")
def single(tiny_run: Path):
    """The studio over one run folder, with an upscaler -> (base URL, the upscaler)."""
    upscaler = GatedUpscaler()
    with running(create_app(tiny_run, device="cpu", upscaler=upscaler)) as base:
        yield base, upscaler


def test_health(base):
    health = get_json(base, "/api/health")
    assert health["status"] == "ok" and health["runs"] == 3 and health["device"] == "cpu"
    assert health["upscaler"] is False


def test_runs_lists_run_folders_only(base, tiny_run):
    runs = get_json(base, "/api/runs")
    assert [r["id"] for r in runs] == ["alpha", "beta", "broken"]
    assert "config.json is not readable" in runs[2]["error"] and runs[2]["checkpoints"] == []
    config = json.loads((tiny_run / "config.json").read_text())
    alpha = runs[0]
    assert alpha["genres"] == config["genres"] and len(alpha["genres"]) == 8
    assert (alpha["height"], alpha["width"]) == (32, 32)
    assert alpha["checkpoints"][0] == "latest.pt" and alpha["step"] == 2
    assert alpha["report"] is None
    assert get_json(base, "/api/runs/alpha")["id"] == "alpha"


def test_genres(base, tiny_run):
    body = get_json(base, "/api/runs/beta/genres")
    assert body == {"run": "beta", "genres": json.loads((tiny_run / "config.json").read_text())["genres"]}


def test_generate_returns_pngs_with_provenance(base):
    status, body = post(base, "/api/generate", {"run": "alpha", "genres": ["horror"], "seed": 5, "n": 3})
    assert status == 200, body
    assert [p["seed"] for p in body["images"]] == [5, 6, 7]
    assert body["genres"] == "horror" and body["step"] == 2 and body["upscaled"] is False
    for poster in body["images"]:
        image = decode(poster["url"])
        assert image.size == (32, 32) and image.mode == "RGB"
        assert image.text["postergen:ai_generated"] == "true"
        assert image.text["postergen:seed"] == str(poster["seed"])
        assert image.text["postergen:genres"] == "horror"
        assert image.text["postergen:step"] == "2"


def test_same_seed_same_image_and_one_load(studio):
    base, app = studio
    request = {"run": "alpha", "genres": ["action+comedy"], "seed": 11, "n": 2, "truncation": 0.7}
    first = post(base, "/api/generate", request)[1]
    loads = app.state.studio.generators.loads
    second = post(base, "/api/generate", request)[1]
    assert first["images"] == second["images"]
    assert first["genres"] == "action+comedy" and decode(first["images"][0]["url"]).text["postergen:truncation"] == "0.7"
    assert app.state.studio.generators.loads == loads  # the model stayed loaded
    alone = post(base, "/api/generate", {**request, "seed": 12, "n": 1})[1]  # seed 12 drawn on its own
    diff = np.abs(np.asarray(decode(alone["images"][0]["url"]), dtype=int) - np.asarray(decode(first["images"][1]["url"])))
    assert diff.max() <= 2  # the same poster (batch size may change the last bit of a convolution)
    assert first["images"][0]["url"] != first["images"][1]["url"]


def test_random_seed_and_no_genres(base):
    status, body = post(base, "/api/generate", {"run": "beta", "n": 2})
    assert status == 200
    seeds = [p["seed"] for p in body["images"]]
    assert seeds[1] == seeds[0] + 1 and body["genres"] == "all"


@pytest.mark.parametrize("request_body, status, words", [
    ({"run": "gamma"}, 404, "unknown run"),
    ({"run": "../alpha"}, 404, "unknown run"),
    ({"run": "alpha", "genres": ["western"]}, 400, "unknown genre western"),
    ({"run": "alpha", "genres": ["horror+western"]}, 400, "unknown genre western"),
    ({"n": 1}, 400, "choose a run: alpha, beta, broken"),
    ({"run": "broken"}, 409, "no checkpoint yet"),
    ({"run": "alpha", "n": 0}, 422, "n:"),
    ({"run": "alpha", "n": 65}, 422, "n:"),
    ({"run": "alpha", "n": "many"}, 422, "n:"),
    ({"run": "alpha", "truncation": 0}, 422, "truncation:"),
    ({"run": "alpha", "truncation": -1}, 422, "truncation:"),
    ({"run": "alpha", "truncation": 6}, 422, "truncation:"),
    ({"run": "alpha", "seed": -1}, 422, "seed:"),
    ({"run": "alpha", "seed": 2**31}, 422, "seed:"),
    ({"run": "alpha", "genres": "horror"}, 422, "genres:"),
    ({"run": "alpha", "steps": 3}, 422, "steps:"),
    ({"run": "alpha", "checkpoint": "../config.json"}, 404, "no checkpoint"),
    ({"run": "alpha", "checkpoint": "/etc/passwd"}, 404, "no checkpoint"),
    ({"run": "alpha", "checkpoint": "step-9.pt"}, 404, "no checkpoint"),
    ({"run": "alpha", "upscale": True}, 409, "no upscaler available"),
])
def test_generate_bad_input_is_4xx_json(base, request_body, status, words):
    got, body = post(base, "/api/generate", request_body)
    assert got == status, body
    assert words in body["error"]


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b"null", b'{"truncation": NaN}', b'{"truncation": Infinity}',
                                 b'{"seed": 1e400}', b'{"genres": [null]}', b"x" * 60_000])  # under the 64 KiB body limit (413 beyond it)
def test_malformed_body_is_422_json(base, raw):
    status, kind, body = call(base, "POST", "/api/generate", raw=raw)
    assert status == 422 and kind.startswith("application/json") and json.loads(body)["error"]


@pytest.mark.parametrize("path", [
    "/api/runs/alpha/files/../../secret.txt",
    "/api/runs/alpha/files/..%2F..%2Fsecret.txt",
    "/api/runs/alpha/files/%2e%2e/%2e%2e/secret.txt",
    "/api/runs/alpha/files/%252e%252e%252fsecret.txt",
    "/api/runs/alpha/files//etc/passwd",
    "/api/runs/alpha/files/%2Fetc%2Fpasswd",
    "/api/runs/alpha/files/samples/../../secret.txt",
    "/api/runs/alpha/files/samples/step-1.png/../../../secret.txt",
    "/api/runs/alpha/files/checkpoints/latest.pt",
    "/api/runs/alpha/files/report.html",
    "/api/runs/beta/files/samples/step-0000000.png",
    "/api/runs/..%2Fsecret.txt/genres",
    "/api/runs/%2E%2E/progress",
    "/api/runs/notes/genres",
    "/static/../../secret.txt",
    "/static/%2e%2e/%2e%2e/secret.txt",
])
def test_traversal_is_refused(base, path):
    status, kind, body = call(base, "GET", path)
    assert 400 <= status < 500, (status, body[:200])
    assert SECRET.encode() not in body and b"root:" not in body


def test_run_files_and_progress(base):
    progress = get_json(base, "/api/runs/alpha/progress")
    assert progress["step"] == 2 and progress["samples"]["step"] == 2 and progress["active"] in (True, False)
    for url in (progress["loss"]["url"], progress["samples"]["url"]):
        status, kind, body = call(base, "GET", url)
        assert status == 200 and kind == "image/png" and body.startswith(b"\x89PNG")
    status, kind, body = call(base, "GET", "/api/runs/alpha/files/config.json")
    assert status == 200 and json.loads(body)["genres"]


def test_interpolate(base):
    status, body = post(base, "/api/interpolate", {"run": "alpha", "seeds": [1, 2], "frames": 4, "genres": ["drama"]})
    assert status == 200, body
    assert [f["t"] for f in body["frames"]] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    image = decode(body["frames"][1]["url"])
    assert image.size == (32, 32) and image.text["postergen:interpolation"] == "1->2"
    assert post(base, "/api/interpolate", {"run": "alpha", "seeds": [1]})[0] == 422
    assert post(base, "/api/interpolate", {"run": "alpha", "seeds": [1, 2], "frames": 65})[0] == 422


def test_openapi_schema_and_page(base):
    schema = get_json(base, "/openapi.json")
    assert {"/api/generate", "/api/runs", "/api/runs/{run_id}/genres", "/api/health"} <= set(schema["paths"])
    assert schema["components"]["schemas"]["GenerateRequest"]["properties"]["n"]["maximum"] == 64
    status, kind, page = call(base, "GET", "/")
    assert status == 200 and kind.startswith("text/html") and b"postergen studio" in page
    for asset in ("/static/studio.js", "/static/studio.css"):
        assert call(base, "GET", asset)[0] == 200


def test_single_run_needs_no_run_id_and_upscales(single):
    base, _ = single
    assert get_json(base, "/api/health")["upscaler"] is True
    status, body = post(base, "/api/generate", {"seed": 3, "n": 1, "upscale": True})
    assert status == 200, body
    image = decode(body["images"][0]["url"])
    assert image.size == (64, 64) and image.text["postergen:upscaled"] == "true"


def test_generation_does_not_block_other_requests(single):
    """While a generate request is held inside the upscaler, the server still answers (work runs off the event loop)."""
    base, upscaler = single
    upscaler.gate.clear()
    upscaler.entered.clear()
    worker = threading.Thread(target=post, args=(base, "/api/generate", {"n": 1, "upscale": True}))
    worker.start()
    try:
        assert upscaler.entered.wait(timeout=600)
        assert call(base, "GET", "/api/health")[0] == 200
        assert worker.is_alive()  # the generate request is still in the upscaler
    finally:
        upscaler.gate.set()
        worker.join()


def test_missing_root_is_a_user_error(tmp_path):
    from postergen.errors import UserError

    with pytest.raises(UserError, match="no such folder"):
        create_app(tmp_path / "nope")
