"""The aggregation feature: routes with ``backends:`` answered by several backend calls merged into one."""

from __future__ import annotations

from gateway_engine.compiled.features import Feature, FeatureInput
from gateway_engine.compiled.model import Contribution

from .definitions import compile_aggregates


class AggregationFeature(Feature):
    name = "aggregation"
    order = 100
    route_keys = frozenset({"backends", "timeout"})

    def compile(self, given: FeatureInput) -> Contribution:
        return Contribution(handlers=dict(compile_aggregates(given.owned, given.core, given.errors)))
