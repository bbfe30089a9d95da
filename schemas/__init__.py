"""The data contracts: the canonical reading envelope, one model per domain, payload adapters, plan thresholds."""
from schemas.envelope import DeadLetter, Reading, Source
from schemas.registry import domain, domain_names, domains

__all__ = ["DeadLetter", "Reading", "Source", "domain", "domain_names", "domains"]
