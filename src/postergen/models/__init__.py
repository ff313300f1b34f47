"""Models: the DCGAN family (dcgan.py), super-resolution networks (sr.py), and the registry that
names them (registry.py): build through `registry.get(arch)`, not by importing a family directly."""
