"""The XML-RPC front: OpenNebula's /RPC2 endpoint over a threaded stdlib server.

Replies follow oned's RequestXRPC::make_response: success [true, value, 0]; failure
[false, "[method] message", code, resp_id, replication_index] with the last value an <i8>.
Type and arity errors are XML-RPC faults, as xmlrpc-c raises them in oned.
"""

from __future__ import annotations

import socketserver
import time
import xmlrpc.client
from collections.abc import Callable
from typing import Any
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

from idlevm.one.states import ERROR_CODES
from idlevm.onesim.cloud import Cloud
from idlevm.onesim.model import OneError

# xmlrpc-c fault codes (xmlrpc-c/util.h): what oned's library returns for bad params.
FAULT_TYPE = -501
FAULT_INDEX = -502
FAULT_NO_SUCH_METHOD = -506


class I8(int):
    """An int that must travel as <i8> (oned's replication index is a 64-bit value)."""


class Wire(str):
    """A string already escaped for XML-RPC (see xmlgen.wire): sent without re-escaping."""


class _Marshaller(xmlrpc.client.Marshaller):
    dispatch = dict(xmlrpc.client.Marshaller.dispatch)

    def dump_wire(self, value: str, write: Callable[[str], Any]) -> None:
        write("<value><string>")
        write(value)
        write("</string></value>\n")

    dispatch[Wire] = dump_wire  # type: ignore[assignment]

    def dump_i8(self, value: int, write: Callable[[str], Any]) -> None:
        write(f"<value><i8>{int(value)}</i8></value>\n")

    dispatch[I8] = dump_i8  # type: ignore[assignment]


def dumps_response(value: object, encoding: str = "utf-8") -> str:
    body = _Marshaller(encoding, allow_none=False).dumps((value,))  # type: ignore[arg-type]
    # Marshaller.dumps() writes the <params> wrapper itself.
    return f"<?xml version='1.0'?>\n<methodResponse>\n{body}</methodResponse>\n"


class _SimulatedHttpError(Exception):
    """Raised to make the handler answer HTTP 500 (fault kind HTTP_500)."""


class _Handler(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/RPC2",)
    # oned (xmlrpc-c/abyss) does not gzip replies; keep the wire format the same.
    encode_threshold = None  # type: ignore[assignment]

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests and benchmarks start many servers


def _int(params: tuple[Any, ...], index: int) -> int:
    if index >= len(params):
        raise xmlrpc.client.Fault(FAULT_INDEX, f"Index {index} out of range of parameters")
    value = params[index]
    if isinstance(value, bool) or not isinstance(value, int):
        raise xmlrpc.client.Fault(FAULT_TYPE, f"Parameter {index} is not an integer")
    return value


def _str(params: tuple[Any, ...], index: int) -> str:
    if index >= len(params):
        raise xmlrpc.client.Fault(FAULT_INDEX, f"Index {index} out of range of parameters")
    value = params[index]
    if not isinstance(value, str):
        raise xmlrpc.client.Fault(FAULT_TYPE, f"Parameter {index} is not a string")
    return value


def _dict(params: tuple[Any, ...], index: int) -> dict[str, Any]:
    value = params[index] if index < len(params) else {}
    if not isinstance(value, dict):
        raise xmlrpc.client.Fault(FAULT_TYPE, f"Parameter {index} is not a struct")
    return value


class Dispatcher:
    """Maps method names to Cloud calls; returns oned-shaped reply arrays."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        c = cloud
        self.one: dict[str, Callable[[tuple[Any, ...]], object]] = {
            "one.system.version": lambda p: c.version(),
            "one.hostpool.info": lambda p: c.host_pool_xml(),
            "one.host.info": lambda p: c.host_xml(_int(p, 1)),
            "one.vmpool.info": lambda p: self._pool(p, False),
            "one.vmpool.infoextended": lambda p: self._pool(p, True),
            "one.vm.info": lambda p: c.vm_xml(_int(p, 1)),
            "one.vm.action": lambda p: c.vm_action(_str(p, 1), _int(p, 2)),
        }
        self.sim: dict[str, Callable[[tuple[Any, ...]], object]] = {
            "onesim.vm.monitoring": lambda p: c.set_vm_monitoring(
                _int(p, 1), _dict(p, 2), bool(p[3]) if len(p) > 3 else False
            ),
            "onesim.host.template": lambda p: c.set_host_template(_int(p, 1), _dict(p, 2)),
            "onesim.vm.state": lambda p: c.set_vm_state(
                _int(p, 1), _str(p, 2), _str(p, 3) if len(p) > 3 else "LCM_INIT"
            ),
            "onesim.host.state": lambda p: c.set_host_state(_int(p, 1), _str(p, 2)),
            "onesim.vm.allocate": lambda p: c.allocate_vm(**_dict(p, 1)),
            "onesim.vm.delete": lambda p: c.delete_vm(_int(p, 1)),
            "onesim.fault": lambda p: c.set_fault(**_dict(p, 1)),
            "onesim.reset": lambda p: c.reset(),
        }

    def _pool(self, p: tuple[Any, ...], extended: bool) -> Wire:
        if len(p) > 5:
            _str(p, 5)  # the full-text filter: accepted, not applied
        args = (_int(p, 1), _int(p, 2), _int(p, 3), _int(p, 4))
        return Wire(self.cloud.vm_pool_wire(*args, extended))

    def _dispatch(self, method: str, params: tuple[Any, ...]) -> object:
        handler = self.one.get(method) or self.sim.get(method)
        if handler is None:
            raise xmlrpc.client.Fault(FAULT_NO_SUCH_METHOD, f"Method '{method}' not defined")
        session = _str(params, 0)
        try:
            if method in self.one:
                self._apply_fault(method)
            self.cloud.check_session(session)
            value = handler(params)
        except OneError as err:
            return [False, f"[{method}] {err.message}", err.code, err.resp_id, I8(-1)]
        except (ValueError, TypeError) as err:  # bad onesim.* arguments
            raise xmlrpc.client.Fault(FAULT_TYPE, f"{method}: {err}") from err
        if value is None:  # onesim.* setters: answer like oned's id-returning calls
            value = 0
        return [True, value, 0]

    def _apply_fault(self, method: str) -> None:
        fault = self.cloud.take_fault(method)
        if fault.delay:
            time.sleep(fault.delay)
        if fault.fail == "FAULT":
            raise xmlrpc.client.Fault(FAULT_TYPE, fault.message)
        if fault.fail == "HTTP_500":
            raise _SimulatedHttpError(fault.message)
        if fault.fail is not None:
            raise OneError(ERROR_CODES[fault.fail], fault.message)


class OneSimServer(socketserver.ThreadingMixIn, SimpleXMLRPCServer):
    """Threaded XML-RPC server; one daemon thread per connection."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, cloud: Cloud, host: str = "127.0.0.1", port: int = 2633) -> None:
        super().__init__((host, port), requestHandler=_Handler, logRequests=False, allow_none=False)
        self.dispatcher = Dispatcher(cloud)
        self.cloud = cloud

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/RPC2"

    def _marshaled_dispatch(  # type: ignore[override]
        self, data: Any, dispatch_method: Any = None, path: Any = None
    ) -> bytes:
        """Like the stdlib one, but with the <i8>-capable marshaller."""
        try:
            params, method = xmlrpc.client.loads(data, use_builtin_types=True)
        except Exception as exc:  # malformed request body
            fault = xmlrpc.client.Fault(-32700, f"parse error: {exc}")
            return xmlrpc.client.dumps(fault, methodresponse=True).encode()
        if method is None:
            fault = xmlrpc.client.Fault(-32600, "no method name")
            return xmlrpc.client.dumps(fault, methodresponse=True).encode()
        try:
            response = dumps_response(self.dispatcher._dispatch(method, params))
        except xmlrpc.client.Fault as err:
            response = xmlrpc.client.dumps(err, methodresponse=True)
        except _SimulatedHttpError:
            raise
        except Exception as exc:  # a simulator bug: report it like xmlrpc-c would
            bug = xmlrpc.client.Fault(-500, f"{type(exc).__name__}: {exc}")
            response = xmlrpc.client.dumps(bug, methodresponse=True)
        return response.encode("utf-8", "xmlcharrefreplace")
