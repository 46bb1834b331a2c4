"""Scaffold a user's mapping directory: the defaults, their golden cases, a README and a
CI snippet, ready to pass ``cdp-tiktok conformance DIR`` as it is."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Final

from cdp_tiktok.conformance.cases import CASES_FOLDER, case_files, cases_dir
from cdp_tiktok.mapping.defaults import default_mapping_dir

CI_FILE = Path("ci") / "conformance.yml"

README: Final = """\
# TikTok mappings

Mapping files (`*.yaml`) turn Segment messages into TikTok Events API events; the
`golden/` folder holds the cases that prove them: an input message and the exact TikTok
events it must produce. Started from the cdp_tiktok defaults with `cdp-tiktok init`.

* Check everything: `cdp-tiktok conformance {name}` (mapping files, every golden case,
  property checks of every rule, every plugin); add `--sandbox` to also send each case's
  output to the local TikTok sandbox, `--thorough` for more generated examples.
* Use it: `cdp-tiktok send events.jsonl --mappings {name}` (or the `mappings` setting).
* See what a message becomes: `cdp-tiktok map message.json --mappings {name} --explain`.
* Match quality of real traffic: `cdp-tiktok report sample.jsonl --mappings {name}`.
* In pytest: `pytest --cdp-tiktok-mappings={name}` (or `cdp_tiktok_mappings = {name}` in
  your pytest ini file).
* In CI: `ci/conformance.yml` is a ready GitHub Actions workflow; copy it to
  `.github/workflows/`.

When you change a rule, change or add its golden case in `golden/`: the suite fails with
a diff by JSON pointer when an output differs from its case. The case format, and what
each check guarantees, is in cdp_tiktok's docs/conformance.md.
"""

CI: Final = """\
# GitHub Actions: run the cdp_tiktok conformance suite on every push and pull request.
# Copy to .github/workflows/conformance.yml at the root of your repository.
name: TikTok mapping conformance
on: [push, pull_request]
jobs:
  conformance:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - run: pip install cdp_tiktok   # pin the version you run in production
      - run: cdp-tiktok conformance {path} --sandbox --junit conformance-junit.xml
      - uses: actions/upload-artifact@v4
        if: always()
        with:
          name: conformance-junit
          path: conformance-junit.xml
"""


class ScaffoldError(ValueError):
    """The directory cannot be scaffolded (it exists and is not empty)."""


def scaffold(directory: Path) -> list[Path]:
    """Create ``directory`` with the default mappings and cases; return the files made.

    Refuses (:class:`ScaffoldError`) a directory that exists and is not empty, so nothing
    of the user's is overwritten.
    """
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ScaffoldError(f"{directory} already exists and is not empty; choose a new directory")
    defaults = default_mapping_dir()
    made: list[Path] = []
    (directory / CASES_FOLDER).mkdir(parents=True, exist_ok=True)
    for source in sorted(defaults.glob("*.y*ml")):
        made.append(Path(shutil.copyfile(source, directory / source.name)))
    for source in case_files(cases_dir(defaults)):
        made.append(Path(shutil.copyfile(source, directory / CASES_FOLDER / source.name)))
    readme = directory / "README.md"
    readme.write_text(README.format(name=directory.name or "."), encoding="utf-8")
    made.append(readme)
    ci = directory / CI_FILE
    ci.parent.mkdir(parents=True, exist_ok=True)
    ci.write_text(CI.format(path=directory.as_posix()), encoding="utf-8")
    made.append(ci)
    return made
