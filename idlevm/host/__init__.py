"""idlevm.host: what runs on the KVM hypervisors (standard library only, Python 3.6+).

- vmm: the driver hook that gives each VM a serial port on the FIFOs
  /tmp/vm_serial/one<ID>.{in,out} (prepare, cleanup);
- install: puts the wrappers around OpenNebula's kvm deploy/save/restore/... and the probes
  into OpenNebula's remotes folder;
- probe: drains every VM's FIFO and prints the idle data for OpenNebula's monitoring.
"""
