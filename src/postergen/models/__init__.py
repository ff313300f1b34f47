"""Models: the DCGAN family (dcgan.py), FastGAN's G and D (fastgan.py), the projected and ensemble Ds
(projected.py, ensemble.py, over the frozen networks of features.py), super-resolution networks
(sr.py), and the registry that names them (registry.py): build through `registry.get(arch)`, not by
importing a family directly."""
