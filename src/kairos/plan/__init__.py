"""`kairos plan`: capacity of a deployment and the cheapest deployment for a rate, by simulation."""

from kairos.plan.capacity import Capacity, Probe, find_capacity
from kairos.plan.cheapest import Sized, cheapest
from kairos.plan.launch import launch_plan
from kairos.plan.slo import SloTarget

__all__ = ["Capacity", "Probe", "Sized", "SloTarget", "cheapest", "find_capacity", "launch_plan"]
