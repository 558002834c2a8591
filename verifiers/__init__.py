"""Binary verifiers for ReST-EM: math answer matching and code tests (through ``sandbox``).

This package imports no torch: it must run on a bare CPU box as a service.
"""

from verifiers.verdict import Outcome, Verdict

__all__ = ["Outcome", "Verdict"]
