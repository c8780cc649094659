"""OneClient: the one place that talks XML-RPC to OpenNebula.

stdlib xmlrpc.client with a Transport that gives a connect timeout, a timeout for each read
and for the whole reply, and caps the response size (a broken or hostile endpoint must not
exhaust memory or hang us); replies are decoded with lxml (wire.py).
Not thread-safe: the transport keeps one HTTP connection; use one client per thread. (vms()
fetches the next page on a second connection while parsing the current one.)
"""

from __future__ import annotations

import contextlib
import copy
import http.client
import socket
import ssl
import threading
import xmlrpc.client
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from idlevm.one.auth import Credentials, credentials_from_env, endpoint_from_env, parse_session
from idlevm.one.errors import (
    OneError,
    OneTimeoutError,
    OneTransportError,
    error_for_code,
    scrub,
)
from idlevm.one.parse import parse_host_pool, parse_vm, parse_vm_pool
from idlevm.one.records import Host, VirtualMachine
from idlevm.one.wire import decode_response

# one.vm.action names accepted by current OpenNebula (FACTS.md); anything else is refused
# locally so a typo never reaches oned.
VM_ACTIONS = frozenset(
    {"terminate", "terminate-hard", "undeploy", "undeploy-hard", "poweroff", "poweroff-hard",
     "reboot", "reboot-hard", "hold", "release", "stop", "suspend", "resume", "resched",
     "unresched"}
)  # fmt: skip
DEFAULT_PAGE_SIZE = 2000
DEFAULT_MAX_RESPONSE_BYTES = 512 * 1024 * 1024
_READ_CHUNK = 256 * 1024
# Pages overlap by this fraction so a VM deleted between two pages cannot shift another one
# past the page boundary unseen; duplicates from the overlap are dropped by id.
_OVERLAP_DIVISOR = 20
_MAX_STEP_BACKS = 8  # consecutive, for one page

POOL_FILTER_ALL = -2
POOL_STATE_ALL_BUT_DONE = -1


class _TimeoutsMixin:
    """connect() with the connect timeout, then switch the socket to the read timeout."""

    read_timeout: float
    sock: socket.socket | None

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        if self.sock is not None:
            self.sock.settimeout(self.read_timeout)


class _HTTPConnection(_TimeoutsMixin, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_TimeoutsMixin, http.client.HTTPSConnection):
    pass


class _Transport(xmlrpc.client.Transport):
    """HTTP(S) transport with two timeouts and a response size cap."""

    # No gzip: a compressed reply could expand past any cap before we counted it.
    accept_gzip_encoding = False

    def __init__(
        self,
        https: bool,
        connect_timeout: float,
        timeout: float,
        max_bytes: int,
        context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__()
        self._https = https
        self._context = context
        self._connect_timeout = connect_timeout
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._expired = False
        self._sock: socket.socket | None = None

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        cached = self._connection[1]
        if cached is not None and host == self._connection[0]:
            return cached
        chost, self._extra_headers, _ = self.get_host_info(host)
        conn: _HTTPConnection | _HTTPSConnection
        if self._https:
            context = self._context or ssl.create_default_context()
            conn = _HTTPSConnection(chost, timeout=self._connect_timeout, context=context)
        else:
            conn = _HTTPConnection(chost, timeout=self._connect_timeout)
        conn.read_timeout = self._timeout
        self._connection = host, conn
        return conn

    def single_request(
        self, host: Any, handler: str, request_body: Any, verbose: bool = False
    ) -> Any:
        """One call within the whole-call deadline (`timeout`), headers and body included.

        Every socket read has the read timeout, but a server trickling bytes meets each one:
        at the deadline a timer shuts the socket down, which ends any read in progress.
        """
        self._expired = False
        timer = threading.Timer(self._timeout, self._expire)
        timer.daemon = True
        timer.start()
        try:
            return super().single_request(host, handler, request_body, verbose)
        except (OSError, http.client.HTTPException, ValueError):
            if self._expired:
                self.close()
                raise OneTimeoutError(f"no complete reply within {self._timeout:g} s") from None
            raise
        finally:
            timer.cancel()

    def send_request(self, host: Any, handler: str, request_body: Any, debug: bool) -> Any:
        conn = super().send_request(host, handler, request_body, debug)
        # Kept here: http.client hands the socket to the response and forgets it.
        self._sock = conn.sock
        return conn

    def _expire(self) -> None:
        self._expired = True
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    def parse_response(self, response: http.client.HTTPResponse) -> Any:
        encoding = response.getheader("Content-Encoding", "") or ""
        if encoding.lower() not in ("", "identity"):
            raise OneTransportError(f"unexpected Content-Encoding {encoding[:32]!r}")
        declared = response.getheader("Content-Length")
        if declared and declared.isdigit() and int(declared) > self._max_bytes:
            raise OneTransportError(f"response of {declared} bytes exceeds the cap")
        chunks, total = [], 0
        while chunk := response.read1(_READ_CHUNK):
            total += len(chunk)
            if total > self._max_bytes:
                raise OneTransportError(f"response exceeds the cap of {self._max_bytes} bytes")
            chunks.append(chunk)
        return decode_response(b"".join(chunks))


class OneClient:
    """Typed calls to one OpenNebula endpoint."""

    def __init__(
        self,
        url: str,
        session: str | Credentials,
        connect_timeout: float = 5.0,
        timeout: float = 30.0,
        page_size: int = DEFAULT_PAGE_SIZE,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        creds = session if isinstance(session, Credentials) else parse_session(session)
        if page_size < 2:
            # Overlapping pages need two VMs; and end=-1 would mean "no limit", not paging.
            raise ValueError("page_size must be at least 2")
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL scheme {scheme!r} (want http or https)")
        self._creds = creds
        # The URL's own userinfo ("http://user:pass@host") is a secret as well.
        parts = urlsplit(url)
        url_secrets = (parts.password or "", parts.netloc.rpartition("@")[0])
        self._secrets = (creds.session, creds.password, *url_secrets)
        self.url = url
        self.page_size = page_size
        transport = _Transport(
            scheme == "https", connect_timeout, timeout, max_response_bytes, ssl_context
        )
        self._transport = transport
        self._proxy = xmlrpc.client.ServerProxy(url, transport=transport)

    @classmethod
    def from_environment(cls, **kwargs: Any) -> OneClient:
        """Endpoint from $ONE_XMLRPC, session from the one_auth lookup (see auth.py)."""
        return cls(endpoint_from_env(), credentials_from_env(), **kwargs)

    def __repr__(self) -> str:
        return f"OneClient({scrub(self.url, self._secrets)!r}, user={self._creds.user!r})"

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> OneClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ calls

    def version(self) -> str:
        value = self.call("one.system.version")
        if not isinstance(value, str):
            raise OneTransportError("one.system.version did not return a string")
        return value

    def hosts(self) -> list[Host]:
        return parse_host_pool(self._xml("one.hostpool.info"))

    def vm(self, vm_id: int) -> VirtualMachine:
        return parse_vm(self._xml("one.vm.info", _check_id(vm_id)))

    def vms(self) -> list[VirtualMachine]:
        """Every VM but DONE ones, full bodies (MONITORING included), fetched in pages."""
        return list(self.iter_vms())

    def iter_vms(self) -> Iterator[VirtualMachine]:
        """As vms(), streamed page by page; each VM id is yielded once.

        oned lists in id order (DESC by default, API_LIST_ORDER, ASC possible) and pages by
        offset, while VMs come and go between pages. Consecutive pages overlap, so the next
        page must start at or before the previous page's last id (in list order): then no
        VM that lived through the listing was skipped. If it starts past it, VMs before the
        window were deleted and the window slid: that page is fetched again from further
        back. Insertions only repeat VMs, dropped by id.
        """
        size = self.page_size
        overlap = max(1, size // _OVERLAP_DIVISOR)
        seen: set[int] = set()
        offset, last_id, order = 0, -1, 0
        step_backs = stale_pages = 0
        clone = self._clone()
        with contextlib.closing(clone), _Prefetcher(clone._page, size) as pages:
            while True:
                xml = pages.take(offset)
                # Speculate that the next page follows: oned renders it while we parse. A
                # cheap count (it may over-count a template attribute named VM, which only
                # costs a request) skips the guess after the last page.
                if xml.count("<VM>") >= size:
                    pages.request(offset + size - overlap)
                page = list(parse_vm_pool(xml))
                order = order or _order(page)
                # Without changes an empty page never follows a full one: the pool shrank.
                slid = not page or (page[0].id - last_id) * order > 0
                if last_id >= 0 and slid and offset > 0:  # nothing precedes offset 0
                    step_backs += 1
                    if step_backs > _MAX_STEP_BACKS:
                        # Better no answer than one silently missing VMs.
                        raise OneTransportError("the VM pool changes too fast to list it whole")
                    offset = max(0, offset - (size - overlap))
                    continue
                step_backs = 0
                fresh = [vm for vm in page if vm.id not in seen]
                seen.update(vm.id for vm in fresh)
                yield from fresh
                if len(page) < size:
                    return
                # A server that keeps sending full pages of known VMs would loop forever.
                stale_pages = 0 if fresh else stale_pages + 1
                if stale_pages > _MAX_STEP_BACKS:
                    raise OneTransportError("one.vmpool.infoextended keeps repeating the same VMs")
                last_id = page[-1].id
                offset += size - overlap

    def _clone(self) -> OneClient:
        """A client of the same endpoint with its own connection, for another thread."""
        clone = copy.copy(self)
        transport = self._transport
        clone._transport = _Transport(
            transport._https, transport._connect_timeout, transport._timeout,
            transport._max_bytes, transport._context,
        )  # fmt: skip
        clone._proxy = xmlrpc.client.ServerProxy(self.url, transport=clone._transport)
        return clone

    def _page(self, offset: int, size: int) -> str:
        return self._xml(
            "one.vmpool.infoextended",
            POOL_FILTER_ALL,
            offset,
            -size,  # end below -1: a page of `size` VMs starting at `offset`
            POOL_STATE_ALL_BUT_DONE,
        )

    def vm_action(self, action: str, vm_id: int) -> None:
        if action not in VM_ACTIONS:
            raise ValueError(f"unknown VM action {action!r}")
        self.call("one.vm.action", action, _check_id(vm_id))

    # ------------------------------------------------------------ plumbing

    def _xml(self, method: str, *args: Any) -> str:
        value = self.call(method, *args)
        if not isinstance(value, str):
            raise OneTransportError(f"{method} did not return an XML string", method=method)
        return value

    def call(self, method: str, *args: Any) -> Any:
        """Call an OpenNebula method (session prepended); the success value or an error."""
        try:
            reply = getattr(self._proxy, method)(self._creds.session, *args)
        except OneError as exc:
            self._transport.close()
            raise self._scrubbed(type(exc), exc.message, exc.code, method) from None
        except TimeoutError as exc:
            self._transport.close()
            raise self._scrubbed(OneTimeoutError, f"timed out: {exc}", 0, method) from None
        except (OSError, http.client.HTTPException, xmlrpc.client.Error, ValueError,
                TypeError) as exc:  # fmt: skip
            # `from None`: the original's text may hold the URL or an echoed secret.
            self._transport.close()
            detail = f"{type(exc).__name__}: {exc}"
            raise self._scrubbed(OneTransportError, detail, 0, method) from None
        return self._unpack(method, reply)

    def _unpack(self, method: str, reply: Any) -> Any:
        if not isinstance(reply, list | tuple) or len(reply) not in (3, 5):
            raise OneTransportError("malformed OpenNebula reply", method=method)
        ok, value, code = reply[0], reply[1], reply[2]
        if not isinstance(ok, bool) or not isinstance(code, int):
            raise OneTransportError("malformed OpenNebula reply", method=method)
        if ok:
            return value
        message = scrub(str(value), self._secrets)
        raise error_for_code(code, message, method)

    def _scrubbed(self, cls: type[OneError], message: str, code: int, method: str) -> OneError:
        return cls(scrub(message, self._secrets), code=code, method=method)


class _Prefetcher:
    """Fetches at most one page ahead in a worker thread (with its own connection).

    take(offset) returns that page: the prefetched one if it was the right guess, else the
    guess is discarded and the page fetched now. Never two requests at once on one client.
    """

    def __init__(self, fetch: Callable[[int, int], str], size: int) -> None:
        self._fetch = fetch
        self._size = size
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="one-prefetch")
        self._pending: tuple[int, Future[str]] | None = None

    def request(self, offset: int) -> None:
        if self._pending is None:
            self._pending = (offset, self._pool.submit(self._fetch, offset, self._size))

    def take(self, offset: int) -> str:
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] == offset:
            return pending[1].result()
        if pending is not None:
            pending[1].exception()  # a wrong guess: wait it out, whatever it got
        return self._fetch(offset, self._size)

    def __enter__(self) -> _Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pending is not None:
            self._pending[1].cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)


def _order(page: list[VirtualMachine]) -> int:
    """+1 if the page lists ids ascending, -1 descending, 0 if it cannot tell."""
    if len(page) < 2 or page[0].id == page[1].id:
        return 0
    return 1 if page[1].id > page[0].id else -1


def _check_id(vm_id: int) -> int:
    if isinstance(vm_id, bool) or not isinstance(vm_id, int) or not 0 <= vm_id < 2**31:
        raise ValueError(f"bad VM id {vm_id!r}")
    return vm_id
