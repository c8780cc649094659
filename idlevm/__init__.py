"""idlevm: find idle virtual machines in OpenNebula clouds and reclaim them by rules."""
