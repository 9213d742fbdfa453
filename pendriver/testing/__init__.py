"""Testing support: the pytest plugin (fixtures and ``--pen-url``) and the conformance suite.

This package and the ``sim://`` transport are the driver's only seams to the simulator; both
import it lazily, so a driver installed without the simulator's extras still imports.
"""
