"""Routing requests across replicas (ReplicaView, Router and policies) and KV transfers between pools."""

from kairos.cluster.kv_transfer import bytes_after_prefill, exposed_transfer_s
from kairos.cluster.load_balancing import LeastKv, LeastOutstanding, PowerOfTwo, RoundRobin
from kairos.cluster.prefix_affinity import PrefixAffinity
from kairos.cluster.prefix_keys import PrefixBlockKeys, default_prefix_block_keys
from kairos.cluster.registry import ROUTERS, make_router, router_knobs
from kairos.cluster.replica import ReplicaView
from kairos.cluster.routed_blocks import RoutedBlocks
from kairos.cluster.router import Router
from kairos.cluster.transfer_link import TransferLink

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
    "TransferLink",
    "bytes_after_prefill",
    "default_prefix_block_keys",
    "exposed_transfer_s",
    "make_router",
    "router_knobs",
]
