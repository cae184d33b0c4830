"""Routing requests across engine replicas: the ReplicaView and Router contracts and policies."""

from kairos.cluster.load_balancing import LeastKv, LeastOutstanding, PowerOfTwo, RoundRobin
from kairos.cluster.prefix_affinity import PrefixAffinity
from kairos.cluster.prefix_keys import PrefixBlockKeys, default_prefix_block_keys
from kairos.cluster.registry import ROUTERS, make_router, router_knobs
from kairos.cluster.replica import ReplicaView
from kairos.cluster.routed_blocks import RoutedBlocks
from kairos.cluster.router import Router

__all__ = [
    "ROUTERS",
    "LeastKv",
    "LeastOutstanding",
    "PowerOfTwo",
    "PrefixAffinity",
    "PrefixBlockKeys",
    "ReplicaView",
    "RoundRobin",
    "RoutedBlocks",
    "Router",
    "default_prefix_block_keys",
    "make_router",
    "router_knobs",
]
