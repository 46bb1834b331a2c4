"""Test helpers for users of cdp_tiktok and for conformance suites.

:mod:`cdp_tiktok.testing.strategies` holds hypothesis strategies for Segment messages;
it needs the ``test`` extra (``pip install cdp_tiktok[test]``), so it is not imported
here.
"""
