"""A local TradeStation Web API v3 emulator backed by the simulated market, with fault switches."""

from zerogex_pipeline.tradestation.emulator.server import Emulator, Faults

__all__ = ["Emulator", "Faults"]
