"""OneClient over HTTP against tiny stdlib servers: replies, errors, timeouts, paging."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

import one_xml
import pytest

from idlevm.one import (
    OneActionError,
    OneApiError,
    OneAuthenticationError,
    OneAuthorizationError,
    OneClient,
    OneError,
    OneInternalError,
    OneNoExistsError,
    OneTimeoutError,
    OneTransportError,
)

SECRET = "s3cr3t-Pa55"
SESSION = f"oneadmin:{SECRET}"


class _Quiet(SimpleXMLRPCRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[str, tuple[Any, ...]], Any]], str]]:
    """Start a server whose every call is answered by handler(method, params)."""
    servers: list[SimpleXMLRPCServer] = []

    def start(handler: Callable[[str, tuple[Any, ...]], Any]) -> str:
        server = SimpleXMLRPCServer(
            ("127.0.0.1", 0), requestHandler=_Quiet, logRequests=False, allow_none=True
        )
        server.register_instance(type("I", (), {"_dispatch": staticmethod(handler)})())
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/RPC2"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_success_and_session_is_first_param(serve: Any) -> None:
    seen: list[tuple[str, tuple[Any, ...]]] = []

    def handler(method: str, params: tuple[Any, ...]) -> Any:
        seen.append((method, params))
        if method == "one.system.version":
            return [True, "7.4.0", 0]
        if method == "one.hostpool.info":
            return [True, one_xml.host_pool([one_xml.host(0, vm_ids=[1])]), 0]
        if method == "one.vm.info":
            return [True, one_xml.vm(params[1]), 0, 0, 17]
        return [True, params[2], 0]

    client = OneClient(serve(handler), SESSION)
    assert client.version() == "7.4.0"
    assert [h.id for h in client.hosts()] == [0]
    assert client.vm(5).id == 5
    client.vm_action("suspend", 5)
    assert seen[-1] == ("one.vm.action", (SESSION, "suspend", 5))
    assert all(params[0] == SESSION for _, params in seen)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (0x100, OneAuthenticationError), (0x200, OneAuthorizationError),
        (0x400, OneNoExistsError), (0x800, OneActionError), (0x1000, OneApiError),
        (0x2000, OneInternalError), (0x123, OneError),
    ],
)  # fmt: skip
@pytest.mark.parametrize("five", [False, True])
def test_failure_codes(serve: Any, code: int, cls: type[OneError], five: bool) -> None:
    extra = [7, 3] if five else []  # 7.x: resp_id and replication index
    url = serve(lambda m, p: [False, f"[one.vm.info] failed for {p[0]}", code, *extra])
    with pytest.raises(cls) as info:
        OneClient(url, SESSION).vm(3)
    exc = info.value
    assert type(exc) is cls and exc.code == code and exc.method == "one.vm.info"
    for text in (str(exc), repr(exc), exc.message, str(exc.args)):
        assert SECRET not in text
    assert "[one.vm.info] failed for" in exc.message  # the rest of the message survives


def test_secret_scrubbed_from_faults_and_http_errors(serve: Any) -> None:
    def fault(method: str, params: tuple[Any, ...]) -> Any:
        raise ValueError(f"bad session {params[0]}")  # becomes an XML-RPC fault echoing it

    with pytest.raises(OneTransportError) as info:
        OneClient(serve(fault), SESSION).version()
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    url = serve(lambda m, p: [True, "x", 0]).replace("/RPC2", "/nope")
    url = url.replace("http://", f"http://u:{SECRET}@")
    with pytest.raises(OneTransportError) as info:
        OneClient(url, SESSION).version()
    assert "404" in str(info.value) and SECRET not in str(info.value)


@pytest.mark.parametrize(
    "reply", [[True], "text", [1, "x", 0], [False, "m", "code"], [True, "a", 0, 1], None]
)
def test_malformed_replies(serve: Any, reply: Any) -> None:
    with pytest.raises(OneTransportError):
        OneClient(serve(lambda m, p: reply), SESSION).version()


def test_wrong_value_type(serve: Any) -> None:
    with pytest.raises(OneTransportError, match="XML"):
        OneClient(serve(lambda m, p: [True, 5, 0]), SESSION).hosts()


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(OneTransportError) as info:
        OneClient(f"http://127.0.0.1:{port}/RPC2", SESSION, connect_timeout=1).version()
    assert not isinstance(info.value, OneTimeoutError)


def test_unresolvable_host() -> None:
    with pytest.raises(OneTransportError):
        OneClient("http://no-such-host.invalid:2633/RPC2", SESSION, connect_timeout=2).version()


def test_read_timeout() -> None:
    """A server that accepts the connection but never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/RPC2"
        start = time.monotonic()
        with pytest.raises(OneTimeoutError) as info:
            OneClient(url, SESSION, connect_timeout=1.0, timeout=0.5).version()
        elapsed = time.monotonic() - start
    assert 0.4 < elapsed < 3.0
    assert SECRET not in str(info.value) and info.value.method == "one.system.version"


@pytest.mark.parametrize("in_headers", [False, True])
def test_a_trickling_server_meets_the_whole_call_deadline(in_headers: bool) -> None:
    """Each byte arrives within the read timeout, the reply never ends: give up anyway."""
    stop = threading.Event()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def trickle() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                head = b"HTTP/1.1 200 OK\r\nX-Slow: " if in_headers else b"HTTP/1.1 200 OK\r\n\r\n"
                conn.sendall(head)
                while not stop.wait(0.05):  # bounded: ends when the test does
                    try:
                        conn.sendall(b"x")
                    except OSError:
                        return

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/RPC2"
        start = time.monotonic()
        try:
            with pytest.raises(OneTimeoutError, match="complete reply"):  # headers or body
                OneClient(url, SESSION, connect_timeout=1.0, timeout=1.0).version()
        finally:
            stop.set()
            thread.join(5)
    assert time.monotonic() - start < 3.0


def test_response_size_cap(serve: Any) -> None:
    url = serve(lambda m, p: [True, "x" * 100_000, 0])
    with pytest.raises(OneTransportError, match="cap"):
        OneClient(url, SESSION, max_response_bytes=50_000).version()
    assert len(OneClient(url, SESSION, max_response_bytes=200_000).version()) == 100_000


def test_action_validated_locally(serve: Any) -> None:
    calls: list[str] = []
    client = OneClient(serve(lambda m, p: calls.append(m) or [True, 1, 0]), SESSION)
    with pytest.raises(ValueError, match="shutdown"):
        client.vm_action("shutdown", 1)  # a 3.x name, gone today
    with pytest.raises(ValueError):
        client.vm_action("suspend", -1)
    assert calls == []


def test_repr_hides_secret() -> None:
    client = OneClient(f"http://u:{SECRET}@127.0.0.1:1/RPC2", SESSION)
    assert SECRET not in repr(client) and SECRET not in str(client)


class PoolServer:
    """vmpool.infoextended over a mutable id list with oned's paging (LIMIT offset, size)."""

    def __init__(self, ids: list[int], descending: bool = True) -> None:
        self.ids = ids
        self.descending = descending
        self.calls: list[tuple[int, int, int, int]] = []
        self.on_call: Callable[[int], None] = lambda n: None

    def __call__(self, method: str, params: tuple[Any, ...]) -> Any:
        assert method == "one.vmpool.infoextended"
        _, flt, start, end, state = params
        self.calls.append((flt, start, end, state))
        self.on_call(len(self.calls))
        ordered = sorted(self.ids, reverse=self.descending)
        page = ordered[start : start - end]
        return [True, one_xml.vm_pool(one_xml.vm(i) for i in page), 0]


@pytest.mark.parametrize("descending", [True, False])
def test_paging_complete_without_duplicates(serve: Any, descending: bool) -> None:
    pool = PoolServer(list(range(1, 251)), descending)
    client = OneClient(serve(pool), SESSION, page_size=40)
    ids = [vm.id for vm in client.vms()]
    assert sorted(ids) == list(range(1, 251)) and len(ids) == len(set(ids))
    assert all(c[0] == -2 and c[2] == -40 and c[3] == -1 for c in pool.calls)
    assert pool.calls[0][1] == 0 and len(pool.calls) > 250 // 40


def test_paging_exact_multiple_and_empty(serve: Any) -> None:
    assert OneClient(serve(PoolServer([])), SESSION, page_size=10).vms() == []
    pool = PoolServer(list(range(100)))
    assert len(OneClient(serve(pool), SESSION, page_size=25).vms()) == 100


def test_paging_survives_insertions(serve: Any) -> None:
    """DESC order: new VMs appear at the front and push known ones into the next page."""
    pool = PoolServer(list(range(300)))
    pool.on_call = lambda n: pool.ids.extend(range(1000 + 10 * n, 1010 + 10 * n))
    ids = [vm.id for vm in OneClient(serve(pool), SESSION, page_size=50).vms()]
    assert len(ids) == len(set(ids)) and set(range(300)) <= set(ids)


@pytest.mark.parametrize("descending", [True, False])
def test_paging_survives_deletions(serve: Any, descending: bool) -> None:
    """VMs deleted from the already-read part must not make us skip unread ones."""
    pool = PoolServer(list(range(400)), descending)
    doomed = iter(sorted(range(400), reverse=descending))

    def delete_read_ones(n: int) -> None:
        if n > 1:
            for _ in range(15):  # more than the overlap
                pool.ids.remove(next(doomed))

    pool.on_call = delete_read_ones
    survivors_before = set(range(400))
    ids = [vm.id for vm in OneClient(serve(pool), SESSION, page_size=60).vms()]
    assert len(ids) == len(set(ids))
    assert set(pool.ids) <= set(ids) <= survivors_before


def test_paging_gives_up_on_a_looping_server(serve: Any) -> None:
    url = serve(lambda m, p: [True, one_xml.vm_pool(one_xml.vm(i) for i in range(20)), 0])
    with pytest.raises(OneTransportError, match="repeating"):
        OneClient(url, SESSION, page_size=20).vms()


@pytest.mark.parametrize("descending", [True, False])
def test_paging_survives_deletion_of_the_previous_pages_tail(serve: Any, descending: bool) -> None:
    """The VMs a page overlaps with are the ones deleted: nothing unread may be skipped."""
    pool = PoolServer(list(range(200)), descending)
    read_tails: list[int] = []

    def delete_last_page_tail(n: int) -> None:
        if pool.calls and n > 1:
            _, start, end, _ = pool.calls[-2]
            ordered = sorted(pool.ids, reverse=descending)
            tail = ordered[max(0, start - end - 5) : start - end]  # last 5 of that page
            read_tails.extend(tail)
            for vm_id in tail:
                pool.ids.remove(vm_id)

    pool.on_call = delete_last_page_tail
    ids = [vm.id for vm in OneClient(serve(pool), SESSION, page_size=40).vms()]
    assert read_tails, "the scenario deleted nothing"
    assert len(ids) == len(set(ids))
    assert set(pool.ids) <= set(ids)


def test_page_size_must_allow_overlapping_pages() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        OneClient("http://127.0.0.1:9/RPC2", SESSION, page_size=1)


def test_paging_survives_deletion_of_everything_already_read(serve: Any) -> None:
    pool = PoolServer(list(range(1, 151)))  # DESC: the first page is 150..51

    def terminate_first_page(n: int) -> None:
        if n == 2:
            for vm_id in range(51, 151):
                pool.ids.remove(vm_id)

    pool.on_call = terminate_first_page
    ids = {vm.id for vm in OneClient(serve(pool), SESSION, page_size=100).vms()}
    assert set(range(1, 51)) <= ids


def test_a_pool_smaller_than_a_page_costs_one_call(serve: Any) -> None:
    pool = PoolServer(list(range(50)))
    assert len(OneClient(serve(pool), SESSION, page_size=100).vms()) == 50
    assert len(pool.calls) == 1
