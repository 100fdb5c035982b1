"""Django discovers the brokers app's models here; they live in `brokers.paper.models`."""

from brokers.paper.models import PaperAccount, PaperInstrument, PaperOrder, PaperPosition, PaperTrade

__all__ = ["PaperAccount", "PaperInstrument", "PaperOrder", "PaperPosition", "PaperTrade"]
