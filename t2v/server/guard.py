"""The ASGI middleware in front of every route (the API and the web app): who may ask, and how much.

In order: the Host header (DNS rebinding: a page on attacker.example whose name now points at
127.0.0.1 sends `Host: attacker.example`), the Origin of state-changing requests (a page on
another site posting to this one), the API token, file uploads only where files are taken
(`POST /v1/uploads` and the web app's file fields), and the size and arrival time of request bodies
(an upload's counted as it streams, never held whole). Every response gets the security headers; a
token given in a page's address is never written to the log.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import secrets
from collections.abc import Iterable
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, urlsplit

from starlette.responses import JSONResponse

from t2v.pipelines.long_video.storyboard import excerpt


TOKEN_COOKIE = "t2v_token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_ADDRESSES = ("0.0.0.0", "::", "")
STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")
UPLOAD_PATHS = ("/v1/uploads", "/gradio_api/upload")  # where a multipart body (a file) is taken
UPLOAD_OVERHEAD = 64 * 1024  # an upload's body beyond its file: the multipart boundaries and part headers
UPLOAD_SECONDS = 600.0  # an upload's whole body (each piece of it: the body time, --header-timeout)
# The page is Gradio's (its scripts and styles from this server, some inline; its HTML component renders
# templates with Function(), hence 'unsafe-eval') and the API's JSON: nothing from elsewhere, no framing
# by other sites, no plugins.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; media-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"referrer-policy", b"no-referrer"),  # a page's address may hold ?token=
    (b"cross-origin-resource-policy", b"same-origin"),
)


def host_name(header: str) -> str | None:
    """The host of a Host header ("[::1]:7860" -> "::1", "Example.COM." -> "example.com"), None if malformed."""
    if not header or any(c in header for c in "/@?#\\ \t"):
        return None
    try:
        name = urlsplit("//" + header).hostname
    except ValueError:
        return None
    return name.rstrip(".") if name else None


class Hosts:
    """The names this server answers to: localhost names, loopback addresses, the address it is bound
    to (bound to 0.0.0.0 or ::, any IP address: a rebinding attack needs a DNS name), and `extra`
    (--allowed-host: a name, ".example.com" for it and its subdomains, or "*" for any)."""

    def __init__(self, bound: str, extra: Iterable[str] = ()):
        extra = [e.strip().lower().rstrip(".") for e in extra if e.strip()]
        self.any = "*" in extra
        self.suffixes = tuple(e for e in extra if e.startswith("."))
        bound = bound.strip("[]").lower()
        self.names = ({*LOOPBACK_NAMES, bound, *extra, *(s[1:] for s in self.suffixes)}) - set(WILDCARD_ADDRESSES)
        self.any_ip = bound in WILDCARD_ADDRESSES

    def allows(self, header: str | None) -> bool:
        if header is None or self.any:  # no Host at all: HTTP/1.0, not a browser
            return True
        name = host_name(header)
        if name is None:
            return False
        if name in self.names or name.endswith(".localhost") or name.endswith(self.suffixes or ("\0",)):
            return True
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return False  # a name that is not on the list
        return address.is_loopback or self.any_ip


def same_origin(origin: str, host: str | None) -> bool:
    """Whether a browser's Origin header names this very server (scheme://the Host header)."""
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and host is not None and parts.netloc.lower() == host.lower()


class Guard:
    """ASGI middleware: Host allow-list, Origin check, API token, uploads only where files are taken, bounded
    bodies, security headers.

    The token is accepted as `Authorization: Bearer <token>`, as the `t2v_token` cookie, or once as
    `?token=<token>` in a page's address (which sets the cookie, so the web app and its video
    player work in a browser).
    """

    def __init__(
        self,
        app,
        token: str | None,
        max_body_bytes: int,
        hosts: Hosts,
        body_seconds: float = 10.0,
        max_header_bytes: int = 16 * 1024,
        max_upload_bytes: int = 64 * 1024 * 1024,
    ):
        self.app, self.token, self.max_body, self.hosts = app, token, max_body_bytes, hosts
        self.body_seconds, self.max_header_bytes = body_seconds, max_header_bytes
        self.max_upload, self.max_upload_body = max_upload_bytes, max_upload_bytes + UPLOAD_OVERHEAD

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        send = self._with_headers(send)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            status, message = refusal
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            extra = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            return await JSONResponse({"detail": message}, status, headers=extra)(scope, receive, send)
        if self.token:
            ok = self._token_ok(scope, headers)
            if ok[2] and not ok[1]:  # given in the address only: kept as a cookie from now on
                send = self._with_cookie(send)
        if _is_upload(scope):
            return await self._upload(scope, receive, send)
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            body = await self._read_body(scope, receive, send)
            if body is None:
                return
            sent, inner_receive = False, receive

            async def receive():  # replays the body read above, then waits for the disconnect
                nonlocal sent
                if sent:
                    return await inner_receive()
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, receive, send)

    def _refusal(self, scope, headers: dict) -> tuple[int, str] | None:
        """(status, message) for a request this server does not take, else None."""
        size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        size += sum(len(k) + len(v) + 4 for k, v in scope["headers"])
        if size > self.max_header_bytes:  # (h11 bounds headers that arrive in pieces; these came at once)
            return 431, f"the request's address and headers are larger than {self.max_header_bytes} bytes"
        host = headers.get("host")
        if not self.hosts.allows(host):
            return 400, f"this server does not answer to the host {excerpt(host)} (see t2v serve --allowed-host)"
        origin = headers.get("origin")
        changes = scope["type"] == "websocket" or scope["method"] in STATE_CHANGING
        if changes and origin is not None and not same_origin(origin, host):
            return 403, f"cross-origin request refused (Origin {excerpt(origin)} is not this server)"
        if self.token and not any(self._token_ok(scope, headers)):
            return 401, "a valid API token is required (Authorization: Bearer <token>)"
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            multipart = headers.get("content-type", "").lower().startswith("multipart/")
            length = headers.get("content-length", "0") or "0"
            if _is_upload(scope):
                if not headers.get("content-type", "").lower().startswith("multipart/form-data"):
                    return 415, "an upload is a multipart/form-data body with the file in it"
                if not length.isdigit() or int(length) > self.max_upload_body:
                    return 413, self._upload_too_big()
                return None
            if multipart or scope["path"].rstrip("/").endswith("/gradio_api/upload"):
                return 403, "this server takes no file uploads here: files go to POST /v1/uploads"
            if not length.isdigit() or int(length) > self.max_body:
                return 413, f"the request body is larger than {self.max_body} bytes"
        return None

    def _upload_too_big(self) -> str:
        return f"the upload is larger than {self.max_upload / 2**20:.3g} MB (this server's --max-upload-mb)"

    async def _upload(self, scope, receive, send):
        """Hand an upload's body on as it arrives (never held whole), counted: past the upload limit a 413, a
        piece later than the body time (or the whole later than UPLOAD_SECONDS) a 408; the app then sees the
        client gone, and what it answers is dropped."""
        loop = asyncio.get_running_loop()
        deadline, size, answered, started = loop.time() + UPLOAD_SECONDS, 0, False, False

        async def refuse(status: int, message: str, headers: dict | None = None):
            nonlocal answered
            if not started:
                await JSONResponse({"detail": message}, status, headers=headers)(scope, receive, send)
            answered = True
            return {"type": "http.disconnect"}

        async def metered_receive():
            nonlocal size
            if answered:
                return {"type": "http.disconnect"}
            try:
                async with asyncio.timeout(max(0.0, min(self.body_seconds, deadline - loop.time()))):
                    message = await receive()
            except TimeoutError:
                return await refuse(408, "the upload did not arrive in time", {"Connection": "close"})
            size += len(message.get("body", b""))
            if size > self.max_upload_body:
                return await refuse(413, self._upload_too_big(), {"Connection": "close"})
            return message

        async def guarded_send(message):
            nonlocal started
            if not answered:
                started = True
                await send(message)

        try:
            await self.app(scope, metered_receive, guarded_send)
        except Exception:
            if not answered:  # the app's own failure; after a refusal, it only saw the client go
                raise

    def _token_ok(self, scope, headers: dict) -> list[bool]:
        """Whether the token is given (compared in constant time) as [Authorization header, cookie, ?token=]."""
        try:
            cookie = SimpleCookie(headers.get("cookie", ""))
        except CookieError:
            cookie = {}
        given = [
            headers.get("authorization", "").removeprefix("Bearer ").strip(),
            cookie[TOKEN_COOKIE].value if TOKEN_COOKIE in cookie else "",
            parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0],
        ]
        return [bool(g) and secrets.compare_digest(g.encode(), self.token.encode()) for g in given]

    async def _read_body(self, scope, receive, send) -> bytes | None:
        """The whole body (small bodies only: read, counted, then handed on), or None once refused."""
        body, more = b"", True
        try:
            async with asyncio.timeout(self.body_seconds):
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    body += message.get("body", b"")
                    more = message.get("more_body", False)
                    if len(body) > self.max_body:
                        await JSONResponse({"detail": f"the request body is larger than {self.max_body} bytes"}, 413)(
                            scope, receive, send
                        )
                        return None
        except TimeoutError:
            message = f"the request body did not arrive within {self.body_seconds:g} s"
            await JSONResponse({"detail": message}, 408, headers={"Connection": "close"})(scope, receive, send)
            return None
        return body

    def _with_headers(self, send):
        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return send_with_headers

    def _with_cookie(self, send):
        async def send_with_cookie(message):  # the token given once in the address, kept as a cookie
            if message["type"] == "http.response.start":
                cookie = f"{TOKEN_COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())]}
            await send(message)

        return send_with_cookie


def _is_upload(scope) -> bool:
    return scope["type"] == "http" and scope["method"] == "POST" and scope["path"].rstrip("/") in UPLOAD_PATHS


class RedactTokens(logging.Filter):
    """Writes `token=...` in a logged address as `token=***` (uvicorn's access log shows the query)."""

    PATTERN = re.compile(r"((?:[?&]|%3F|%26)token=)[^&\s\"']*", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = self.PATTERN.sub(r"\1***", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self.PATTERN.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        return True


def redact_tokens_in_logs() -> None:
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
