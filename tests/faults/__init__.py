"""Fault injection between our programs and the local kube-apiserver (proxy.py)."""
