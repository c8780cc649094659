"""onesim: an OpenNebula front-end simulator speaking the real XML-RPC API (see docs/onesim.md)."""

from idlevm.onesim.cloud import Cloud
from idlevm.onesim.model import OneError

__all__ = ["Cloud", "OneError"]
