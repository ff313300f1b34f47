"""`postergen serve`: the studio's JSON API and its one page (static/, no CDN, works offline).

Routes (JSON unless noted):
  GET  /                              the page; /static/* its CSS and JS
  GET  /api/health                    {"status": "ok", "version", "device", "runs", "upscaler": bool, "limits"}
  GET  /api/runs                      [run]: {id, genres, height, width, z_dim, step, steps, checkpoints,
                                      report (URL or null), active (still training), error (null, or why
                                      its config.json is unreadable)}
  GET  /api/runs/{id}                 one run
  GET  /api/runs/{id}/genres          {"run", "genres"}
  GET  /api/runs/{id}/progress        {run, step, steps, active, checkpoints, report,
                                      loss: {url, mtime} | null, samples: {url, mtime, step} | null}
  GET  /api/runs/{id}/files/{name}    the file itself: report.html, loss.png, config.json, eval.json,
                                      metrics.jsonl or samples/step-N.png (nothing else)
  POST /api/generate                  posters, below
  POST /api/interpolate               {seeds: [a, b], frames, genres, truncation, run, checkpoint}
                                      -> {..., frames: [{t, url}]}: a slerp walk from seed a to b
  GET  /openapi.json                  the schema (the /docs explorer is off: it loads scripts from a CDN)

POST /api/generate
  {"run": "horror", "genres": ["horror"], "seed": 7, "n": 4, "truncation": 0.8}
  -> {"run": "horror", "checkpoint": "latest.pt", "step": 3000, "genres": "horror", "truncation": 0.8,
      "upscaled": false, "height": 64, "width": 64, "seconds": 0.05,
      "images": [{"seed": 7, "genres": "horror", "url": "data:image/png;base64,..."}, ... seeds 8, 9, 10]}
  run may be left out when one run is served; checkpoint defaults to latest.pt; genres are combined
  into one condition (["action", "comedy"] == ["action+comedy"]), none means unconditioned ("all");
  seeds are seed..seed+n-1 as in `postergen sample`, and a left-out seed draws a random first one;
  n is 1-64; truncation (0, 5] or null; upscale true needs an upscaler (see postergen.web.upscaler).
  Every PNG carries postergen's provenance text chunks (`postergen info` prints them).

Errors are JSON {"error": "one line", "detail": ...}: 404 unknown run/checkpoint/file, 400 a bad
genre or a missing run choice, 409 no checkpoint yet, a damaged one or no upscaler, 422 fields out
of range, 421 a Host header the studio does not answer to (below), 413 a request body over MAX_BODY
(64 KiB; refused unread, and the connection closed). Paths in errors are relative to
the served folder (Studio.relative): a response never tells where the studio's files live.

Host check (DNS rebinding): a web page on another site can point its own name at 127.0.0.1 and then
read this unauthenticated API from the visitor's browser; such requests carry that site's name in
Host. So every request's Host must name the server as it was bound (host_names): for a loopback bind
localhost, 127.0.0.1 or [::1]; for a specific address that address; plus any --allowed-host names.
A bind to every address (0.0.0.0, ::) accepts any Host: whoever can reach the port is trusted then.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Annotated, Iterable, Iterator

import anyio
from fastapi import APIRouter, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from postergen import __version__
from postergen.config import MAX_STUDIO_SEED, MAX_TRUNCATION
from postergen.errors import UserError
from postergen.runfolder import RunFolder
from postergen.runtime import pick_device
from postergen.web import runs as run_folders
from postergen.web import upscaler as upscalers
from postergen.web.runs import NotFound, Unavailable
from postergen.web.studio import Studio

STATIC = Path(__file__).parent / "static"
MAX_POSTERS = 64  # per request: a page of posters, and a bound on the work one request can ask for
MAX_BODY = 64 << 10  # bytes of a request body: the API's JSON is well under 1 KB; beyond this a client could fill memory
LIMITS = {"posters": MAX_POSTERS, "frames": MAX_POSTERS, "seed": MAX_STUDIO_SEED, "truncation": MAX_TRUNCATION}

Seed = Annotated[int, Field(ge=0, le=MAX_STUDIO_SEED)]

LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})  # the names a loopback-bound studio answers to
EVERYWHERE = frozenset({"", "0.0.0.0", "::"})  # bind addresses that listen on every interface


class _Posters(BaseModel):
    """What every request that draws posters shares: which model, which genres, how much truncation."""
    model_config = ConfigDict(extra="forbid")
    run: str | None = Field(None, max_length=255, description="run id from GET /api/runs; may be left out when one run is served")
    checkpoint: str = Field(RunFolder.LATEST, max_length=64, description="checkpoint file of the run (GET /api/runs lists them)")
    genres: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list, max_length=32,
        description="genres combined into one condition; 'action+comedy' also works; empty: unconditioned")
    truncation: float | None = Field(None, gt=0, le=MAX_TRUNCATION, allow_inf_nan=False, description="truncation trick: redraw latent entries with |z| above this; null: off")


class GenerateRequest(_Posters):
    seed: Seed | None = Field(None, description="first seed (posters use seed..seed+n-1); null: random")
    n: int = Field(8, ge=1, le=MAX_POSTERS, description="how many posters")
    upscale: bool = Field(False, description="super-resolve the posters (GET /api/health says if an upscaler exists)")


class InterpolateRequest(_Posters):
    seeds: list[Seed] = Field(min_length=2, max_length=2, description="[from, to]")
    frames: int = Field(16, ge=2, le=MAX_POSTERS, description="posters along the way, both ends included")


class Poster(BaseModel):
    seed: int
    genres: str
    url: str = Field(description="data:image/png;base64,... with provenance text chunks")


class GenerateResponse(BaseModel):
    run: str
    checkpoint: str
    step: int | None
    genres: str
    truncation: float | None
    upscaled: bool
    height: int
    width: int
    seconds: float
    images: list[Poster]


class Frame(BaseModel):
    t: float = Field(description="0 at seeds[0], 1 at seeds[1]")
    url: str


class InterpolateResponse(BaseModel):
    run: str
    checkpoint: str
    step: int | None
    genres: str
    seeds: list[int]
    height: int
    width: int
    frames: list[Frame]


router = APIRouter()


def _studio(request: Request) -> Studio:
    return request.app.state.studio


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/api/health")
def health(request: Request) -> dict:
    studio = _studio(request)
    return {"status": "ok", "version": __version__, "device": str(studio.device),
            "runs": len(studio.runs()), "upscaler": studio.upscaler is not None,
            "limits": LIMITS}  # the page's inputs take their bounds from here: one source for both


@router.get("/api/runs")
def list_runs(request: Request) -> list[dict]:
    return [run_folders.summary(run_id, run) for run_id, run in _studio(request).runs().items()]


@router.get("/api/runs/{run_id}")
def one_run(run_id: str, request: Request) -> dict:
    return run_folders.summary(*_studio(request).run(run_id))


@router.get("/api/runs/{run_id}/genres")
def genres(run_id: str, request: Request) -> dict:
    run_id, run = _studio(request).run(run_id)
    return {"run": run_id, "genres": run_folders.read_config(run).get("genres", [])}


@router.get("/api/runs/{run_id}/progress")
def progress(run_id: str, request: Request) -> dict:
    return run_folders.progress(*_studio(request).run(run_id))


@router.get("/api/runs/{run_id}/files/{name:path}")
def run_file(run_id: str, name: str, request: Request) -> Response:
    _, run = _studio(request).run(run_id)
    data, media = run_folders.snapshot(run, name)  # bytes read once: training may be appending
    return Response(data, media_type=media, headers={"Cache-Control": "no-cache"})


@router.post("/api/generate", response_model=GenerateResponse)
async def generate(body: GenerateRequest, request: Request) -> dict:
    work = functools.partial(_studio(request).generate, **body.model_dump())
    return await anyio.to_thread.run_sync(work, limiter=request.app.state.limiter)


@router.post("/api/interpolate", response_model=InterpolateResponse)
async def interpolate(body: InterpolateRequest, request: Request) -> dict:
    work = functools.partial(_studio(request).interpolate, **body.model_dump())
    return await anyio.to_thread.run_sync(work, limiter=request.app.state.limiter)


def _error(status: int, message: str, detail=None, headers: dict | None = None) -> JSONResponse:
    body = {"error": message} if detail is None else {"error": message, "detail": jsonable_encoder(detail)}
    return JSONResponse(body, status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    """Every error is JSON with a one-line `error`; user mistakes are 4xx, never 500."""
    statuses = ((NotFound, 404), (Unavailable, 409), (UserError, 400))  # most specific first

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        status = next(code for kind, code in statuses if isinstance(exc, kind))
        return _error(status, _studio(request).relative(str(exc)))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # The client's input is not echoed back: it may be huge, or NaN, which JSON cannot carry.
        errors = [{"loc": [str(p) for p in e.get("loc", ()) if p != "body"], "msg": str(e.get("msg", "invalid")),
                   "type": str(e.get("type", ""))} for e in exc.errors()]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        return _error(422, f"{'.'.join(first['loc']) or 'body'}: {first['msg']}", errors)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:  # a bug, not the client's mistake
        message = _studio(request).relative(str(exc))  # the server log has the traceback, with full paths
        return _error(500, f"internal error ({type(exc).__name__}: {message[:200]})")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))


def host_names(bind: str, extra: Iterable[str] = ()) -> frozenset[str] | None:
    """The Host names a server bound to `bind` answers to, plus `extra`; None (any) when it binds everywhere.

    A loopback bind answers to every loopback name (a browser may say localhost, 127.0.0.1 or [::1]);
    another address only to itself: the names a DNS-rebinding page can put in Host are its own.
    """
    bind = _unbracket(bind.strip().lower())
    if bind in EVERYWHERE:
        return None
    names = {bind, *(_unbracket(name.strip().lower()) for name in extra)}
    return frozenset(names | LOOPBACK if bind in LOOPBACK else names)


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name
        return False


def _unbracket(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _host_of(header: str) -> str | None:
    """The name in a Host header ('[::1]:8000' -> '::1'), or None when it is malformed."""
    header = header.strip().lower()
    if header.startswith("["):
        name, bracket, port = header[1:].partition("]")
        if not bracket:
            return None
    else:
        name, colon, port = header.partition(":")
        port = colon + port
    if port and not (port.startswith(":") and port[1:].isdigit() and len(port) <= 6):
        return None
    return name or None


class HostCheck:
    """Answers 421 to requests whose Host is not one of `names`, before routing or any handler runs.

    Not Starlette's TrustedHostMiddleware: that one refuses with plain text (the API promises JSON
    errors), 400 (421 Misdirected Request says what happened: the request reached a server that does
    not serve that name), and carries a www-redirect that has no place here.
    """

    def __init__(self, app: ASGIApp, names: Iterable[str]) -> None:
        self.app = app
        self.names = frozenset(names)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            header = Headers(scope=scope).get("host", "")
            if _host_of(header) not in self.names:
                if scope["type"] == "websocket":  # none are served; refuse before accepting
                    await send({"type": "websocket.close", "code": 1008})
                    return
                served = ", ".join(f"[{n}]" if ":" in n else n for n in sorted(self.names))
                asked = f"host {header[:80]!r}" if header else "requests without a Host header"
                response = _error(421, f"this studio does not answer to {asked}, only to {served} "
                                       "(a defence against DNS rebinding; `postergen serve --allowed-host NAME` adds a name)")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """Answers 413 to a request whose body is over `limit` bytes, before the app holds it in memory.

    FastAPI reads a whole body before it parses it, so without a bound the client decides how much
    memory the server takes (a 256 MiB POST grew it by 500 MB). A declared Content-Length over the
    limit is refused before any of the body is read; a chunked body is read here up to the limit and
    handed on, or refused the moment it passes it. The 413 closes the connection, so the rest of the
    body is never read.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            declared = headers.get("content-length", "0").strip()  # digits under uvicorn; else unmeasurable: refused
            if "chunked" in headers.get("transfer-encoding", "").lower():  # chunked wins over a Content-Length
                receive = await self._read_chunked(receive)  # None: over the limit
            elif not declared.isdigit() or int(declared) > self.limit:
                receive = None
            if receive is None:
                response = _error(413, f"request body over {self.limit // 1024} KiB (the studio's requests are "
                                       "small JSON objects)", headers={"Connection": "close"})  # the rest stays unread
                await response(scope, _nothing, send)
                return
        await self.app(scope, receive, send)

    async def _read_chunked(self, receive: Receive) -> Receive | None:
        """The body's messages read up to the limit and replayed to the app; None once it passes the limit."""
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":  # the client went away: the app hears it next
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                return None
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()
        return replay


async def _nothing() -> Message:  # a response sent without reading the request
    return {"type": "http.disconnect"}


def check_root(root: Path) -> None:
    """A one-line UserError unless ROOT is a folder the studio can list."""
    try:
        mode = root.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise UserError(f"{root}: no such folder") from None
    except OSError as e:
        raise UserError(f"{root}: cannot read it ({e.strerror or type(e).__name__})") from None
    if not stat.S_ISDIR(mode):
        raise UserError(f"{root}: not a folder (give a run folder, or a folder of runs)")
    try:
        run_folders.discover(root)
    except Unavailable as e:
        raise UserError(f"{root}: {e}") from None


def create_app(root: Path, device: str = "cpu", upscaler: upscalers.Upscaler | None = None,
               workers: int = 2, allowed_hosts: Iterable[str] | None = LOOPBACK) -> FastAPI:
    """The studio over ROOT (a run folder, or a folder of runs).

    device: 'cpu', 'cuda', 'mps' or 'auto'; upscaler: None looks for one (postergen.web.upscaler.find);
    workers: generation requests rendered at once (more queue; one forward pass already uses every core);
    allowed_hosts: the Host names it answers to (host_names(bind) for a server; None: any).
    """
    root = Path(root)
    check_root(root)
    dev = pick_device(device)
    studio = Studio(root, dev, upscaler if upscaler is not None else upscalers.find(root, dev))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.limiter = anyio.CapacityLimiter(workers)
        yield

    app = FastAPI(title="postergen studio", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  description="Generate AI movie posters from postergen runs. See the module docstring of postergen.web.app.")
    app.state.studio = studio
    app.add_middleware(BodyLimit, limit=MAX_BODY)  # added first, so inside the Host check (the outermost)
    if allowed_hosts is not None:
        app.add_middleware(HostCheck, names=allowed_hosts)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _add_error_handlers(app)
    return app


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or a one-line UserError naming the address (port taken or out of range, unknown host)."""
    host = _unbracket(host)
    where = _netloc(host, port)
    if not 0 <= port <= 65535:
        raise UserError(f"cannot listen on {where}: a port is 0-65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart need not wait out TIME_WAIT
    try:
        sock.bind((host, port))
        sock.listen()  # here, not in uvicorn: the port is ours (or the error one line) before the server starts
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise UserError(f"cannot listen on {where}: the port is in use (another server? choose another --port)") from None
        raise UserError(f"cannot listen on {where} ({e.strerror or e})") from None
    return sock


def _server(app: FastAPI):
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))


def serve(root: Path, host: str = "127.0.0.1", port: int = 8000, device: str = "cpu",
          allowed_hosts: Iterable[str] = ()) -> None:
    """Run the studio until Ctrl-C. Loopback by default: the studio has no authentication.

    allowed_hosts: more Host names to answer to (host_names); every failure to start is a one-line UserError.
    """
    names = host_names(host, allowed_hosts)
    app = create_app(root, device, allowed_hosts=names)
    sock = bind(host, port)
    studio: Studio = app.state.studio
    server = _server(app)
    try:
        port = sock.getsockname()[1]
        print(f"postergen studio: http://{_netloc(_unbracket(host), port)}/  "
              f"({len(studio.runs())} run(s) under {root}, device {studio.device}; Ctrl-C stops)")
        if names is None:
            print(f"warning: listening on every address: anyone who can reach port {port} can use the studio "
                  "(no authentication), and the Host check is off")
        elif not _is_loopback(_unbracket(host)):
            print(f"warning: listening on {host}: anyone who can reach it can use the studio (no authentication)")
        server.run(sockets=[sock])
    except UserError:
        raise
    except OSError as e:
        raise UserError(f"the studio stopped: {e.strerror or e}") from None
    except SystemExit as e:  # uvicorn exits when the app fails to start
        if server.started:
            raise
        raise UserError(f"the studio did not start (uvicorn exit code {e.code})") from None
    finally:
        sock.close()


@contextlib.contextmanager
def running(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` from a background thread (tests, benchmarks, notebooks) -> its base URL."""
    sock = bind(host, port)
    server = _server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 300  # bounds a server that never starts; a slow start (a busy machine) is waited for
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not server.started:
        sock.close()
        raise RuntimeError("the studio server did not start")
    try:
        yield f"http://{_netloc(_unbracket(host), sock.getsockname()[1])}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
