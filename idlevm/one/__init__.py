"""idlevm.one: the thin, typed wrapper around OpenNebula's XML-RPC API."""

from idlevm.one.auth import Credentials, credentials_from_env, endpoint_from_env
from idlevm.one.client import VM_ACTIONS, OneClient
from idlevm.one.errors import (
    OneActionError,
    OneAllocateError,
    OneApiError,
    OneAuthenticationError,
    OneAuthorizationError,
    OneConfigError,
    OneError,
    OneInternalError,
    OneLockedError,
    OneNoExistsError,
    OneParseError,
    OneReplicationError,
    OneTimeoutError,
    OneTransportError,
)
from idlevm.one.idle import (
    format_host_idle,
    format_monitoring_idle,
    newest,
    parse_host_idle,
    parse_monitoring_idle,
)
from idlevm.one.parse import parse_host, parse_host_pool, parse_vm, parse_vm_pool
from idlevm.one.records import Host, IdleProblem, IdleRecord, VirtualMachine

__all__ = [
    "VM_ACTIONS",
    "Credentials",
    "Host",
    "IdleProblem",
    "IdleRecord",
    "OneActionError",
    "OneAllocateError",
    "OneApiError",
    "OneAuthenticationError",
    "OneAuthorizationError",
    "OneClient",
    "OneConfigError",
    "OneError",
    "OneInternalError",
    "OneLockedError",
    "OneNoExistsError",
    "OneParseError",
    "OneReplicationError",
    "OneTimeoutError",
    "OneTransportError",
    "VirtualMachine",
    "credentials_from_env",
    "endpoint_from_env",
    "format_host_idle",
    "format_monitoring_idle",
    "newest",
    "parse_host",
    "parse_host_idle",
    "parse_host_pool",
    "parse_monitoring_idle",
    "parse_vm",
    "parse_vm_pool",
]
