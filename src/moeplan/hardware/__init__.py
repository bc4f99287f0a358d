"""Devices, hosts, links and rigs: what a model has to fit into and how fast it can be read."""
