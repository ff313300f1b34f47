"""The studio under attack and misuse: foreign Host headers (DNS rebinding), broken runs whose errors
must not reveal where the studio's files live, `serve` on a taken port or a root that is no folder, files
served while training appends to them, and request bodies too large to hold."""

from __future__ import annotations

import base64
import http.client
import io
import json
import pathlib
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from PIL import Image

from conftest import call
from postergen.errors import UserError
from postergen.web.app import create_app, host_names, running, serve


def raw_request(base: str, data: bytes) -> bytes:
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture(scope="module")
def faulty_root(tiny_run: Path, tmp_path_factory) -> Path:
    """A good run and runs broken in the ways a disk or an interrupted copy breaks them."""
    root = tmp_path_factory.mktemp("faults") / "runs"
    for name in ("good", "cut", "junk", "cfgdir"):
        shutil.copytree(tiny_run, root / name)
    latest = root / "cut" / "checkpoints" / "latest.pt"
    latest.write_bytes(latest.read_bytes()[:100])  # a copy cut short
    (root / "junk" / "checkpoints" / "latest.pt").write_bytes(b"not a checkpoint at all")
    (root / "cfgdir" / "config.json").unlink()
    (root / "cfgdir" / "config.json").mkdir()  # reading it fails with an OSError that names the path
    return root


@pytest.fixture(scope="module")
def studio(faulty_root: Path):
    with running(create_app(faulty_root, device="cpu")) as base:
        yield base


# --- Host header (DNS rebinding) ---------------------------------------------------------------

@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example",
                                  "localhost.evil.example:{port}", "[::2]:{port}", "", "::1", "127.0.0.1:{port}@evil"])
def test_foreign_host_is_refused_before_any_handler(studio, host):
    port = urlsplit(studio).port
    for method, path, body in (("GET", "/api/runs", None), ("GET", "/", None),
                               ("POST", "/api/generate", {"run": "good", "n": 1, "seed": 1})):
        status, kind, data = call(studio, method, path, body, host=host.format(port=port))
        assert status in (400, 421), (host, path, status, data[:200])
        assert kind.startswith("application/json")
        assert json.loads(data)["error"]
        assert b"good" not in data and b"data:image" not in data  # nothing of the studio leaks out


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "[::1]:{port}",
                                  "127.0.0.1", "localhost"])
def test_loopback_names_are_served(studio, host):
    port = urlsplit(studio).port
    status, _, data = call(studio, "GET", "/api/runs", host=host.format(port=port))
    assert status == 200, data[:200]
    assert "good" in [run["id"] for run in json.loads(data)]


def test_request_without_host_is_refused(studio):
    reply = raw_request(studio, b"GET /api/runs HTTP/1.0\r\n\r\n")
    assert reply.split(b" ", 2)[1] in (b"400", b"421"), reply[:200]
    assert b"good" not in reply


def test_host_names_follow_the_bind_address():
    loopback = {"localhost", "127.0.0.1", "::1"}
    for bind in ("127.0.0.1", "localhost", "::1", "[::1]"):
        assert host_names(bind) == loopback
    assert host_names("127.0.0.1", ["studio.lan", "Box.Local"]) == loopback | {"studio.lan", "box.local"}
    assert host_names("192.168.1.5") == {"192.168.1.5"}
    assert host_names("192.168.1.5", ["studio.lan"]) == {"192.168.1.5", "studio.lan"}
    assert host_names("0.0.0.0") is None and host_names("::") is None and host_names("") is None  # any: no protection


def test_allowed_hosts_of_a_custom_app(faulty_root: Path):
    with running(create_app(faulty_root, device="cpu", allowed_hosts={"studio.lan"})) as base:
        port = urlsplit(base).port
        assert call(base, "GET", "/api/health", host=f"studio.lan:{port}")[0] == 200
        assert call(base, "GET", "/api/health", host=f"127.0.0.1:{port}")[0] in (400, 421)
    with running(create_app(faulty_root, device="cpu", allowed_hosts=None)) as base:  # None: any host
        assert call(base, "GET", "/api/health", host="anything.example")[0] == 200


# --- no absolute paths in responses ------------------------------------------------------------

def secrets_of(root: Path) -> list[bytes]:
    """Strings that would tell a client where the studio's files are."""
    return [str(p).encode() for p in {root.resolve(), root.absolute(), root.resolve().parent.parent}]


def test_broken_runs_answer_without_absolute_paths(studio, faulty_root: Path):
    seen = {}
    for run in ("good", "cut", "junk", "cfgdir", "missing", "..", "%2e%2e"):
        for path in ("", "/genres", "/progress", "/files/config.json", "/files/loss.png", "/files/nope.txt"):
            status, _, data = call(studio, "GET", f"/api/runs/{run}{path}")
            if path != "/files/config.json" or status != 200:  # the run's own config.json is served as it is
                seen[f"GET {run}{path}"] = (status, data)
        for checkpoint in ("latest.pt", "step-0000002.pt", "nope.pt"):
            for route, body in (("/api/generate", {"n": 1, "seed": 1}), ("/api/interpolate", {"seeds": [1, 2], "frames": 2})):
                status, _, data = call(studio, "POST", route, {**body, "run": run, "checkpoint": checkpoint})
                seen[f"POST {route} {run} {checkpoint}"] = (status, data)
    seen["GET /api/runs"] = call(studio, "GET", "/api/runs")[::2]
    seen["POST no run"] = call(studio, "POST", "/api/generate", {"n": 1})[::2]
    for what, (status, data) in seen.items():
        assert status < 500, (what, data[:300])
        for secret in secrets_of(faulty_root):
            assert secret not in data, (what, data[:300])

    cut = json.loads(seen["POST /api/generate cut latest.pt"][1])
    assert seen["POST /api/generate cut latest.pt"][0] == 409
    assert "cut/checkpoints/latest.pt" in cut["error"] and "not a loadable" in cut["error"]
    assert seen["POST /api/generate junk latest.pt"][0] == 409
    cfgdir = next(run for run in json.loads(seen["GET /api/runs"][1]) if run["id"] == "cfgdir")
    assert "config.json is not readable" in cfgdir["error"]


def test_a_hand_edited_config_names_its_field_without_paths(tiny_run: Path, tmp_path: Path):
    root = tmp_path / "runs"
    shutil.copytree(tiny_run, root / "edited")
    config = json.loads((root / "edited" / "config.json").read_text())
    config["model"]["width"] = "wide"
    (root / "edited" / "config.json").write_text(json.dumps(config))
    with running(create_app(root, device="cpu")) as base:
        listed = json.loads(call(base, "GET", "/api/runs")[2])
        status, _, data = call(base, "GET", "/api/runs/edited/genres")
    assert listed[0]["error"] == 'edited/config.json: field model.width must be an integer >= 1, not the string "wide"'
    assert status == 409 and json.loads(data)["error"] == listed[0]["error"]
    assert str(tmp_path).encode() not in data


def test_poster_provenance_names_the_run_and_checkpoint_not_a_path(studio, faulty_root: Path):
    status, _, data = call(studio, "POST", "/api/generate", {"run": "good", "n": 1, "seed": 3})
    assert status == 200
    url = json.loads(data)["images"][0]["url"]
    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert image.text["postergen:source"] == "good" and image.text["postergen:checkpoint"] == "latest.pt"


def test_single_run_root_shows_paths_from_the_run_name(tiny_run: Path, tmp_path: Path):
    run = tmp_path / "solo"
    shutil.copytree(tiny_run, run)
    latest = run / "checkpoints" / "latest.pt"
    latest.write_bytes(latest.read_bytes()[:100])
    with running(create_app(run, device="cpu")) as base:
        status, _, data = call(base, "POST", "/api/generate", {"n": 1})
    assert status == 409 and str(tmp_path).encode() not in data
    assert "solo/checkpoints/latest.pt" in json.loads(data)["error"]


def test_unlistable_root_while_serving_is_409_without_path(faulty_root: Path, studio, monkeypatch):
    real = pathlib.Path.iterdir

    def refuse(self):
        if self.name == "runs":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(pathlib.Path, "iterdir", refuse)
    status, kind, data = call(studio, "GET", "/api/runs")
    assert status == 409 and kind.startswith("application/json"), data[:300]
    assert "Permission denied" in json.loads(data)["error"]
    for secret in secrets_of(faulty_root):
        assert secret not in data


# --- `serve` fails with one line ---------------------------------------------------------------

def serve_error(cli, *args) -> str:
    code, out, err = cli("serve", *args, "--device", "cpu")
    assert code == 2, (out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("postergen serve: error: ")
    return err


def test_serve_on_a_port_in_use(cli, faulty_root: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        err = serve_error(cli, faulty_root, "--port", port)
    assert f"127.0.0.1:{port}" in err and "in use" in err


def test_serve_on_a_bound_port(faulty_root: Path):
    with socket.socket() as taken:  # bound, not yet listening
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=f"127.0.0.1:{port}"):
            serve(faulty_root, "127.0.0.1", port, "cpu")


@pytest.mark.parametrize("host, port, words", [("127.0.0.1", 70000, "port"), ("127.0.0.1", -1, "port"),
                                               ("192.0.2.1", 0, "192.0.2.1"), ("no-such-host.invalid", 0, "no-such-host.invalid")])
def test_serve_on_an_address_it_cannot_have(cli, faulty_root: Path, host, port, words):
    assert words in serve_error(cli, faulty_root, "--host", host, "--port", port)


def test_serve_on_a_root_that_is_no_folder(cli, tmp_path: Path):
    (tmp_path / "file.txt").write_text("x")
    assert "not a folder" in serve_error(cli, tmp_path / "file.txt")
    assert "no such folder" in serve_error(cli, tmp_path / "missing")
    assert "no such folder" in serve_error(cli, tmp_path / "file.txt" / "below")


def test_serve_on_an_unreadable_root(cli, tmp_path: Path, monkeypatch):
    root = tmp_path / "locked"
    root.mkdir()
    real = pathlib.Path.iterdir

    def refuse(self):
        if self.name == "locked":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(pathlib.Path, "iterdir", refuse)
    err = serve_error(cli, root)
    assert "locked" in err and "Permission denied" in err


def test_cli_allowed_host_reaches_the_server(cli, tmp_path, monkeypatch):
    import postergen.web.app as app

    seen = {}
    monkeypatch.setattr(app, "serve", lambda root, host, port, device, allowed_hosts=(): seen.update(names=allowed_hosts))
    assert cli("serve", tmp_path, "--allowed-host", "studio.lan", "--allowed-host", "box")[0] == 0
    assert seen["names"] == ["studio.lan", "box"]
    code, _, err = cli("serve", tmp_path, "--allowed-host", " ")
    assert code == 2 and "--allowed-host is empty" in err


# --- files that training writes while they are served ------------------------------------------

# Appends metrics lines as training does, only much faster, until the file argv[2] exists (or 10
# minutes pass: a test that dies leaves no writer behind for long); each line goes out in two writes,
# so a reader can find half a line at the end of the file.
APPENDER = r"""
import json, os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
stop, end, step = sys.argv[2], time.monotonic() + 600, 0
while not os.path.exists(stop) and time.monotonic() < end:
    step += 1
    line = (json.dumps({"step": step, "loss_d": 1.0, "pad": "x" * 2000}) + "\n").encode()
    os.write(fd, line[:1000])
    os.write(fd, line[1000:])
    time.sleep(0.001)
"""


RACED_ANSWERS, RACED_LINES = 40, 40  # requests made, and lines appended, while both run


@pytest.mark.slow
def test_metrics_served_while_training_appends_are_whole_snapshots(run: Path, tmp_path: Path):
    metrics, stop = run / "metrics.jsonl", tmp_path / "stop-appending"
    metrics.write_text("".join(json.dumps({"step": i, "pad": "x" * 2000}) + "\n" for i in range(100)))  # 200 KB
    path, failures, answers = f"/api/runs/{run.name}/files/metrics.jsonl", [], 0
    with running(create_app(run, device="cpu")) as base:
        writer = subprocess.Popen([sys.executable, "-c", APPENDER, str(metrics), str(stop)])
        try:
            # Counted, not timed: requests go on until enough of them, and enough appended lines, lie
            # between the writer's first append and its last, however fast either side runs.
            deadline, before = time.monotonic() + 600, metrics.stat().st_size
            while metrics.stat().st_size == before:  # the writer has started appending
                assert writer.poll() is None and time.monotonic() < deadline, "the writer did not start"
                time.sleep(0.01)
            first = metrics.stat().st_size
            while answers < RACED_ANSWERS or metrics.stat().st_size < first + RACED_LINES * 2000:
                assert writer.poll() is None and time.monotonic() < deadline, (answers, metrics.stat().st_size)
                answers += 1
                try:
                    status, _, body = call(base, "GET", path)
                except (http.client.HTTPException, OSError) as e:  # cut short: more or less than Content-Length
                    failures.append(f"{type(e).__name__}: {e}"[:120])
                    continue
                with open(metrics, "rb") as f:  # append-only: what was served must be how the file began
                    same = f.read(len(body)) == body
                lines = body.splitlines()
                if status != 200 or not body.endswith(b"\n") or not same or not all(json.loads(x)["step"] >= 0 for x in lines):
                    failures.append(f"status {status}, {len(body)} bytes, ends {body[-20:]!r}, a prefix: {same}")
            assert writer.poll() is None  # still appending after the last answer: every request raced it
        finally:
            stop.touch()
            writer.wait(timeout=600)
    assert answers >= RACED_ANSWERS, answers  # enough requests raced the writer to mean something
    assert not failures, f"{len(failures)} of {answers} answers broken: {failures[:3]}"


# --- request bodies too large to hold ----------------------------------------------------------

def post_head(base: str, extra: str) -> bytes:
    port = urlsplit(base).port
    return (f"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"{extra}\r\n").encode()


def answer_to(base: str, head: bytes, body: bytes, timeout: float = 120) -> tuple[int, dict, dict, bool]:
    """Send HEAD and BODY and nothing more, then read the answer -> (status, headers, JSON body, whether
    the server then closed the connection). A server that waits for the rest of a body never answers:
    the socket times out (`timeout` bounds only that)."""
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as sock:
        sock.sendall(head + body)
        response = http.client.HTTPResponse(sock)
        response.begin()
        data = response.read()
        headers = {k.lower(): v for k, v in response.getheaders()}
        closed = False
        if headers.get("connection") == "close":  # what follows the answer: the end of the stream
            try:
                closed = sock.recv(1) == b""
            except ConnectionResetError:  # closed with the unread rest of the body still queued
                closed = True
    return response.status, headers, json.loads(data), closed


def refused(status: int, headers: dict, body: dict, closed: bool) -> None:
    """A 413 that came without the whole body: the body is never sent in full, so any answer is one
    given at once rather than after reading (or waiting for) it; the server then hung up."""
    assert status == 413 and headers["content-type"].startswith("application/json"), (status, body)
    assert "64 KiB" in body["error"] and "\n" not in body["error"]
    assert headers.get("connection") == "close" and closed


def test_a_declared_huge_body_is_refused_unread(studio):
    head = post_head(studio, f"Content-Length: {256 << 20}\r\n")
    refused(*answer_to(studio, head, b"{" + b" " * 1000))  # 1 KB sent of the 256 MiB declared


def test_a_chunked_body_over_the_limit_is_refused(studio):
    chunk = b"2000\r\n" + b" " * 0x2000 + b"\r\n"  # 8 KiB
    refused(*answer_to(studio, post_head(studio, "Transfer-Encoding: chunked\r\n"), b"1\r\n{\r\n" + chunk * 9))


def test_requests_within_the_limit_still_work(studio):
    body = json.dumps({"run": "good", "n": 1, "seed": 1}).encode()
    status, _, answer, _ = answer_to(studio, post_head(studio, f"Content-Length: {len(body)}\r\n"), body)
    assert status == 200 and len(answer["images"]) == 1
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:5], body[5:])) + b"0\r\n\r\n"
    status, _, answer, _ = answer_to(studio, post_head(studio, "Transfer-Encoding: chunked\r\n"), chunked)
    assert status == 200 and answer["images"][0]["seed"] == 1  # the body read ahead reaches the handler whole
    status, _, answer, _ = answer_to(studio, post_head(studio, f"Content-Length: {len(body) + 70000}\r\n"),
                                     body + b" " * 70000)
    assert status == 413  # a body padded past the limit is refused, whatever it holds


def peak_rss_growth(work) -> int:
    """Bytes the peak resident memory of this process (which runs the server) grows by during work()."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current size
    except OSError:
        pytest.skip("cannot reset the peak memory counter (/proc/self/clear_refs)")

    def peak() -> int:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024

    before = peak()
    work()
    return peak() - before


@pytest.mark.parametrize("framing", ["Content-Length", "chunked"])
def test_a_huge_body_does_not_grow_the_server(studio, framing):
    size, piece = 64 << 20, b" " * (1 << 20)
    head = post_head(studio, f"Content-Length: {size}\r\n" if framing == "Content-Length" else "Transfer-Encoding: chunked\r\n")
    if framing == "chunked":
        piece = b"%x\r\n%s\r\n" % (len(piece), piece)
    url, answers = urlsplit(studio), []

    def send_it_all():
        with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
            try:
                sock.sendall(head)
                for _ in range(size // (1 << 20)):
                    sock.sendall(piece)  # the same MiB again and again: the client holds no more
                sock.sendall(b"0\r\n\r\n" if framing == "chunked" else b"")
            except OSError:  # the server answered and closed the connection
                pass
            answers.append(sock.recv(100))

    grown = peak_rss_growth(send_it_all)
    assert grown < 16 << 20, f"the server grew by {grown >> 20} MiB for a {size >> 20} MiB body"
    assert answers and answers[0].startswith(b"HTTP/1.1 413"), answers
