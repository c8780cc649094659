"""The lxml XML-RPC response decoder gives what xmlrpc.client gives, and refuses the rest."""

from __future__ import annotations

import xmlrpc.client

import pytest

from idlevm.one.wire import decode_response


@pytest.mark.parametrize(
    "value",
    [
        [True, "<VM_POOL><VM><NAME>a &amp; b ]]&gt;</NAME></VM_POOL>", 0],
        [False, "[one.vm.info] Error getting virtual machine [42].", 0x400, -1, -1],
        {"a": [1, 2.5, "x"], "b": {"c": False}},
        "plain",
    ],
)
def test_decodes_like_the_stdlib(value):
    body = xmlrpc.client.dumps((value,), methodresponse=True, allow_none=True).encode()
    parser, unmarshaller = xmlrpc.client.getparser()
    parser.feed(body)
    parser.close()
    assert decode_response(body) == tuple(unmarshaller.close())


def test_untyped_value_is_a_string_and_i8_is_an_int():
    body = (
        b"<?xml version='1.0'?><methodResponse><params><param><value><array><data>"
        b"<value>text</value><value><i8>1099511627776</i8></value><value><nil/></value>"
        b"</data></array></value></param></params></methodResponse>"
    )
    assert decode_response(body) == (["text", 2**40, None],)


def test_fault_is_raised_as_xmlrpc_fault():
    body = xmlrpc.client.dumps(xmlrpc.client.Fault(-501, "type error"), methodresponse=True)
    with pytest.raises(xmlrpc.client.Fault) as exc:
        decode_response(body.encode())
    assert exc.value.faultCode == -501 and exc.value.faultString == "type error"


@pytest.mark.parametrize(
    "body, message",
    [
        (b"<html>500</html>", "not an XML-RPC"),
        (b"<methodResponse><params>", "malformed"),
        (b"<methodResponse><params><param><value><blob>x</blob></value></param></params>"
         b"</methodResponse>", "unknown XML-RPC type"),
        (b"<methodResponse><params><param><value><boolean>yes</boolean></value></param>"
         b"</params></methodResponse>", "boolean"),
        (b"<methodResponse><params><param><value>" + b"<array><data><value>" * 40
         + b"x" + b"</value></data></array>" * 40 + b"</value></param></params>"
         b"</methodResponse>", "nested too deeply"),
    ],
)  # fmt: skip
def test_malformed_responses_are_refused(body, message):
    with pytest.raises(ValueError, match=message):
        decode_response(body)


def test_entities_are_not_expanded():
    body = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<methodResponse><params><param><value><string>&x;</string></value></param>"
        b"</params></methodResponse>"
    )
    (value,) = decode_response(body)
    assert "root:" not in value
