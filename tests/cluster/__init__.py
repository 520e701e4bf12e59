"""A local Kubernetes cluster for kata-deploy's end-to-end tests and demo.

Real etcd, kube-apiserver, kube-controller-manager and kube-scheduler on 127.0.0.1, kwok
faking most nodes, and a pod runner acting as the kubelet of a few "runner-backed" nodes
(and of every dispatcher pod), so the chart's hooks and the node installer run for real.
Run as ``python3 -m tests.cluster up|down|add-nodes|status|demo`` from the repository root;
tests use :class:`tests.cluster.cluster.Cluster` directly.
"""
