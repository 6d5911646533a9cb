"""The HTTP side of play mode: one page and a small JSON API, on the standard library's server.

    GET  /                      the page (page.html)
    GET  /api/info              actions, their keys, the episodes, context and window sizes
    POST /api/session           {"episode": i|null}   -> a new session, started from episode i
    POST /api/reset             {"session", "episode": i|null}
    POST /api/step              {"session", "action"} -> the new frame (PNG data URL), its index
    GET  /api/log?session=ID    the session's action log (what the model was asked to do)
    GET  /api/record?session=ID&format=gif|mp4   the session as a video file
    POST /api/close             {"session"}  (the page sends it when the tab closes)

Each browser tab has its own session; sessions idle for `idle_minutes` are dropped too.
`http.server.ThreadingHTTPServer` is enough here: a handful of small requests per key
press from one machine, no websockets, and no dependency to install.
"""

from __future__ import annotations

import base64
import errno
import json
import secrets
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Sequence
from urllib.parse import parse_qs, urlparse

import numpy as np

from teco_jax.errors import UserError
from teco_jax.play.engine import Engine, Episode, Session, png

PAGE = Path(__file__).with_name("page.html")

# Keys for actions by name (arrows and WASD for moving and turning); every action also gets
# its digit (1-9), and "no action" (TECO's null action) gets Space, 0 and N.
KEYS_BY_NAME = {
    "forward": ["ArrowUp", "w"], "backward": ["ArrowDown", "s"], "turn_left": ["ArrowLeft", "a"],
    "turn_right": ["ArrowRight", "d"], "strafe_left": ["q"], "strafe_right": ["e"], "jump": ["j"],
    "forward_jump": ["f"], "noop": ["x"],
}
NO_ACTION_KEYS = [" ", "0", "n"]


def key_map(action_names: Sequence[str]) -> dict[str, int]:
    """{key (KeyboardEvent.key, lower-cased letters): action index}; the last name is "no action"."""
    keys: dict[str, int] = {}
    *actions, _ = action_names
    for i, name in enumerate(actions):
        for k in KEYS_BY_NAME.get(name, []):
            keys.setdefault(k, i)
        if i < 9:
            keys.setdefault(str(i + 1), i)
    for k in NO_ACTION_KEYS:
        keys.setdefault(k, len(actions))
    return keys


class SessionError(UserError):
    """A request names no session, or one that is gone."""


class PlayApp:
    """The sessions and the episodes they start from (thread-safe)."""

    def __init__(self, engine: Engine, episodes: Sequence[Episode], max_sessions: int = 8,
                 idle_minutes: float = 30.0, seed: int = 0):
        if not episodes:
            raise UserError("no episodes to start from")
        self.engine, self.episodes = engine, list(episodes)
        self.max_sessions, self.idle_s = max_sessions, 60 * idle_minutes
        self.sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._rng = np.random.default_rng(seed)

    def info(self) -> dict:
        e = self.engine
        return {"actions": list(e.action_names), "keys": key_map(e.action_names), "null_action": e.null_action,
                "episodes": [ep.name for ep in self.episodes], "context": e.context, "window": e.window,
                "frame_shape": list(self.episodes[0].frames.shape[1:])}

    def _episode(self, index) -> Episode:
        if index is None:
            return self.episodes[int(self._rng.integers(len(self.episodes)))]
        if not isinstance(index, int) or not 0 <= index < len(self.episodes):
            raise UserError(f"episode {index!r}: choose 0..{len(self.episodes) - 1}")
        return self.episodes[index]

    def get(self, session_id) -> Session:
        with self._lock:
            session = self.sessions.get(session_id)
        if session is None:
            raise SessionError(f"no session {session_id!r} (closed, or idle too long): reload the page")
        session.last_seen = time.monotonic()
        return session

    def open(self, episode=None) -> Session:
        self.reap()
        with self._lock:
            if len(self.sessions) >= self.max_sessions:
                raise UserError(f"{self.max_sessions} sessions are open: close a tab first")
        session = Session(self.engine, self._episode(episode), secrets.token_hex(8))
        with self._lock:
            self.sessions[session.id] = session
        return session

    def close(self, session_id) -> None:
        with self._lock:
            self.sessions.pop(session_id, None)

    def reap(self) -> None:
        now = time.monotonic()
        with self._lock:
            for sid in [s for s, v in self.sessions.items() if now - v.last_seen > self.idle_s]:
                del self.sessions[sid]

    def state(self, session: Session) -> dict:
        ep = session.episode
        return {"session": session.id, "episode": self.episodes.index(ep), "episode_name": ep.name,
                "context_frames": [data_url(f) for f in session.frames[: session.context]],
                "frame": data_url(session.frames[-1]), "index": len(session.frames) - 1,
                "context": session.context}


def data_url(frame: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png(frame)).decode()


def make_handler(app: PlayApp, quiet: bool = True):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):  # noqa: D401 - the default logs every request to stderr
            if not quiet:
                super().log_message(fmt, *args)

        def _send(self, status: int, body: bytes, content_type: str, extra: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, obj, status: int = 200) -> None:
            self._send(status, json.dumps(obj).encode(), "application/json")

        def _body(self) -> dict:
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b"{}"
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError as e:
                raise UserError(f"request body is not JSON ({e})") from e
            if not isinstance(body, dict):
                raise UserError("request body must be a JSON object")
            return body

        def _handle(self, method: str) -> None:
            url = urlparse(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            try:
                if method == "GET" and url.path in ("/", "/index.html"):
                    return self._send(200, PAGE.read_bytes(), "text/html; charset=utf-8")
                if method == "GET" and url.path == "/api/info":
                    return self._json(app.info())
                if method == "GET" and url.path == "/api/log":
                    return self._json({"log": app.get(query.get("session")).log})
                if method == "GET" and url.path == "/api/record":
                    session, fmt = app.get(query.get("session")), query.get("format", "gif")
                    data = session.recording(fmt=fmt)
                    name = f"teco_play_{session.id}.{fmt}"
                    return self._send(200, data, "image/gif" if fmt == "gif" else "video/mp4",
                                      {"Content-Disposition": f'attachment; filename="{name}"'})
                if method == "POST" and url.path == "/api/session":
                    return self._json(app.state(app.open(self._body().get("episode"))))
                if method == "POST" and url.path == "/api/reset":
                    body = self._body()
                    session = app.get(body.get("session"))
                    session.reset(app._episode(body.get("episode", app.episodes.index(session.episode))))
                    return self._json(app.state(session))
                if method == "POST" and url.path == "/api/step":
                    body = self._body()
                    session, action = app.get(body.get("session")), body.get("action")
                    if not isinstance(action, int):
                        raise UserError(f"action must be an integer, got {action!r}")
                    frame = session.step(action)
                    return self._json({"frame": data_url(frame), "index": len(session.frames) - 1,
                                       **session.log[-1]})
                if method == "POST" and url.path == "/api/close":
                    app.close(self._body().get("session"))
                    return self._json({"closed": True})
                return self._json({"error": f"no such endpoint: {method} {url.path}"}, HTTPStatus.NOT_FOUND)
            except SessionError as e:
                return self._json({"error": str(e)}, HTTPStatus.GONE)
            except (UserError, ValueError) as e:
                return self._json({"error": str(e)}, HTTPStatus.BAD_REQUEST)

        def do_GET(self):  # noqa: N802 - http.server's naming
            self._handle("GET")

        def do_POST(self):  # noqa: N802
            self._handle("POST")

    return Handler


def serve(app: PlayApp, host: str = "127.0.0.1", port: int = 8000, quiet: bool = True) -> ThreadingHTTPServer:
    """A started server (its own thread); `server.server_address` has the port (0 = any free one)."""
    try:
        server = ThreadingHTTPServer((host, port), make_handler(app, quiet))
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is in use: pass --port N (another port) or --port 0 "
                            f"(any free one)") from None
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="teco_jax.play", daemon=True).start()
    return server
