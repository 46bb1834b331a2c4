"""The conformance suite: golden cases, property checks per rule, the plugin contract.

Everything a user runs to prove a mapping directory and their plugins correct before
anything is sent: ``cdp-tiktok conformance DIR`` (:mod:`cdp_tiktok.cli.conformance`), the
pytest plugin (:mod:`cdp_tiktok.conformance.pytest_plugin`) and the match-quality report
(``cdp-tiktok report``). Modules, one job each:

* :mod:`~cdp_tiktok.conformance.cases`: the golden-case file format, read and validated;
* :mod:`~cdp_tiktok.conformance.diff`: expected vs actual, by JSON pointer;
* :mod:`~cdp_tiktok.conformance.runner`: runs cases through a real :class:`~cdp_tiktok.host.Host`;
* :mod:`~cdp_tiktok.conformance.leaks`: finds raw identifiers in an output;
* :mod:`~cdp_tiktok.conformance.properties`: hypothesis property checks, one per rule;
* :mod:`~cdp_tiktok.conformance.contract`: destination plugins against the hook contract;
* :mod:`~cdp_tiktok.conformance.suite`: all of it, as one list of check results;
* :mod:`~cdp_tiktok.conformance.output`: table, JUnit XML and JSON of those results;
* :mod:`~cdp_tiktok.conformance.quality`: the match-quality report of a sample.

This package ``__init__`` imports nothing, so that loading the pytest plugin is free.
"""
