"""The idlevm agent: runs inside each VM and reports how idle it is on the serial port.

Standard library only, Python 3.6+: it runs on images we do not control. The only other
idlevm module it imports is idlevm.protocol (the line format). docs/agent.md explains it.
"""
