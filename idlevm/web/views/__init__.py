"""The operators' console: one module per section (overview, hosts, vms, errors, actions,
rules), each with its views; urls.py wires them."""
