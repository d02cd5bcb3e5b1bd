"""Debian packages as a data source: download and unpack a .deb without installing it, and read who made each file
and under which licence from the package's copyright file (DEP-5 machine-readable format, with a package-level
fallback for free-text files).

Nothing here knows about landscapes or training; ``infinitygan.recipe`` decides which files to take.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path, PurePosixPath

from infinitygan.data import DataFetchError

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------------------------
# debian/copyright parsing (DEP-5 machine-readable format, with a package-level fallback).
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CopyrightStanza:
    """One "Files:" paragraph of a DEP-5 copyright file."""

    patterns: tuple[str, ...]
    copyright: str
    license: str


@dataclass(frozen=True)
class Licensing:
    """What a copyright file says about one file, and how that was decided."""

    copyright: str
    license: str
    license_source: str


class _MatchKind(IntEnum):
    CATCH_ALL = 1  # "Files: *": says nothing about this file in particular
    SAME_NAME = 2  # the pattern's file name matches but its source-tree directory is not in the installed path
    SAME_PATH = 3  # the pattern matches a trailing part of the installed path


def _deb822_paragraphs(text: str) -> list[dict[str, str]]:
    """Split deb822 text into paragraphs of {lower-cased field name: value}; continuation lines join with newlines."""
    paragraphs: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        if not line.strip():
            if fields:
                paragraphs.append(fields)
            fields, current = {}, None
        elif line[0] in " \t":
            if current is not None:
                fields[current] = f"{fields[current]}\n{line.strip()}"
        elif not line.startswith("#"):
            name, separator, value = line.partition(":")
            # Tolerate stray lines rather than reject a whole file over one typo.
            if separator:
                current = name.strip().lower()
                fields[current] = value.strip()
    if fields:
        paragraphs.append(fields)
    return paragraphs


def parse_dep5(text: str) -> list[CopyrightStanza] | None:
    """The "Files:" stanzas of a DEP-5 copyright file, or None when the text is not machine-readable."""
    paragraphs = _deb822_paragraphs(text)
    if not paragraphs or "format" not in paragraphs[0]:
        return None
    return [
        CopyrightStanza(
            patterns=tuple(paragraph["files"].split()),
            copyright=paragraph.get("copyright", "").strip(),
            # The first line of License is the short name; the rest, if any, is the licence text.
            license=paragraph.get("license", "").strip().split("\n", 1)[0].strip(),
        )
        for paragraph in paragraphs
        if "files" in paragraph
    ]


def _dep5_pattern_regex(pattern: str) -> re.Pattern[str]:
    # DEP-5 globs: "*" matches anything including "/", "?" one character, backslash escapes; nothing else is special.
    parts: list[str] = []
    characters = iter(pattern)
    for character in characters:
        if character == "\\":
            parts.append(re.escape(next(characters, "\\")))
        elif character == "*":
            parts.append(".*")
        elif character == "?":
            parts.append(".")
        else:
            parts.append(re.escape(character))
    return re.compile("".join(parts), re.DOTALL)


def _match_kind(pattern: str, installed_path: str) -> _MatchKind | None:
    if set(pattern) <= {"*"}:
        return _MatchKind.CATCH_ALL
    # Patterns name paths in the upstream source tree while we hold installed paths (mate's nature/Dune.jpg is
    # installed as usr/share/backgrounds/mate/nature/Dune.jpg), so compare against every trailing part of the path.
    parts = installed_path.split("/")
    regex = _dep5_pattern_regex(pattern)
    if any(regex.fullmatch("/".join(parts[start:])) for start in range(len(parts))):
        return _MatchKind.SAME_PATH
    # Some packages also flatten directories on install (lomiri's 16.04/x.jpg becomes usr/share/backgrounds/x.jpg).
    pattern_dir, _, pattern_name = pattern.rpartition("/")
    if pattern_dir and set(pattern_name) - {"*", "?"} and _dep5_pattern_regex(pattern_name).fullmatch(parts[-1]):
        return _MatchKind.SAME_NAME
    return None


def _best_stanza(
    stanzas: Sequence[CopyrightStanza], installed_path: str
) -> tuple[CopyrightStanza, str, _MatchKind] | None:
    best: tuple[_MatchKind, int, CopyrightStanza, str] | None = None
    for index, stanza in enumerate(stanzas):
        for pattern in stanza.patterns:
            kind = _match_kind(pattern, installed_path)
            # DEP-5 says the last matching stanza wins; a closer kind of match wins before that.
            if kind is not None and (best is None or (kind, index) >= best[:2]):
                best = (kind, index, stanza, pattern)
    return None if best is None else (best[2], best[3], best[0])


def _package_level_license(text: str) -> str:
    field = re.search(r"^License:[ \t]*(\S.*)$", text, re.MULTILINE | re.IGNORECASE)
    if field:
        return field.group(1).strip()
    gpl = re.search(r"GNU (Lesser |Library )?General Public License", text)
    # The version is stated in the sentence that names the licence, e.g. "... as published by the FSF; either
    # version 2 of the License, or (at your option) any later version".
    gpl_version = gpl and re.search(r"version (\d)", text[gpl.end() : gpl.end() + 300])
    if gpl and gpl_version:
        later = "+" if "any later version" in text[gpl.end() : gpl.end() + 400] else ""
        return f"{'LGPL' if gpl.group(1) else 'GPL'}-{gpl_version.group(1)}{later}"
    creative_commons = re.search(r"\bCC[- ]BY(?:[- ](?:SA|NC|ND))*[- ]\d\.\d", text)
    if creative_commons:
        return re.sub(r"\s", "-", creative_commons.group(0))
    return "unknown (read the copyright file)"


def licensing_for(copyright_text: str, installed_path: str) -> Licensing:
    """Licence and copyright of one installed file, from its package's copyright file."""
    stanzas = parse_dep5(copyright_text)
    if stanzas is None:
        return Licensing(
            copyright="see the package's copyright file",
            license=_package_level_license(copyright_text),
            license_source="copyright file is not machine-readable (DEP-5): package-level licence",
        )
    found = _best_stanza(stanzas, installed_path)
    if found is None:
        return Licensing(
            copyright="see the package's copyright file",
            license=_package_level_license(copyright_text),
            license_source="DEP-5 copyright file has no stanza for this file and no 'Files: *': package-level guess",
        )
    stanza, pattern, kind = found
    source = {
        _MatchKind.SAME_PATH: f"DEP-5 stanza 'Files: {pattern}'",
        _MatchKind.SAME_NAME: f"DEP-5 stanza 'Files: {pattern}' (matched by file name; installed in another directory)",
        _MatchKind.CATCH_ALL: f"DEP-5 catch-all stanza 'Files: {pattern}': package-level licence, no stanza names it",
    }[kind]
    return Licensing(copyright=stanza.copyright, license=stanza.license, license_source=source)


_EMAIL_OR_URL = re.compile(r"<[^>]*>|\bhttps?://\S+")
_YEARS = re.compile(r"\b\d{4}(?:\s*[-–]\s*\d{4})?\b")
_COPYRIGHT_WORDS = re.compile(r"\(c\)|©|^\s*copyright\b", re.IGNORECASE)


def copyright_holders(copyright_field: str) -> str:
    """Holder names from a Copyright field ("2007, Jo Doe <jo@x.org>" -> "Jo Doe"), joined with "; "."""
    names: list[str] = []
    for line in copyright_field.splitlines():
        name = _COPYRIGHT_WORDS.sub("", _YEARS.sub("", _EMAIL_OR_URL.sub("", line))).strip(" \t,.;:´`'")
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = name[1:-1]
        if name and name not in names:
            names.append(name)
    return "; ".join(names) or copyright_field.strip()


def kde_wallpaper_metadata(package_root: Path, path_in_package: str) -> tuple[list[str], str] | None:
    """(authors, declared licence) from a KDE wallpaper's metadata.json, which names the photographer."""
    parts = PurePosixPath(path_in_package).parts
    if len(parts) < 5 or parts[:3] != ("usr", "share", "wallpapers"):
        return None
    metadata_file = package_root.joinpath(*parts[:4], "metadata.json")
    try:
        plugin = json.loads(metadata_file.read_text(encoding="utf-8")).get("KPlugin", {})
    except (OSError, ValueError, AttributeError):
        return None
    authors = [entry["Name"] for entry in plugin.get("Authors", []) if isinstance(entry, dict) and entry.get("Name")]
    return authors, str(plugin.get("License", ""))


# --------------------------------------------------------------------------------------------------------------------
# Fetching: apt-get download and dpkg-deb -x into a scratch folder.
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DebianPackage:
    """A downloaded .deb, unpacked (not installed) under root."""

    name: str
    version: str
    root: Path  # the extracted file tree


def require_tools() -> None:
    missing = [tool for tool in ("apt-get", "dpkg-deb") if shutil.which(tool) is None]
    if missing:
        raise DataFetchError(
            f"{' and '.join(missing)} not found on PATH: fetch_recipe downloads Debian packages, so it needs a "
            "Debian-based system with apt and dpkg (or copy a data folder made elsewhere)"
        )


def _run(command: list[str], *, cwd: Path, step: str) -> str:
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as error:
        raise DataFetchError(f"{step}: could not run {command[0]}: {error}") from error
    if result.returncode != 0:
        detail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise DataFetchError(f"{step} failed (exit status {result.returncode}): {detail or 'no output'}")
    return result.stdout


def _apt_download_command(package: str) -> list[str]:
    command = ["apt-get", "download"]
    if os.geteuid() == 0:
        # As root, apt hands downloads to the unprivileged _apt user, who cannot write into our private temp folder;
        # apt then falls back to root with a warning anyway, so ask for that directly.
        command += ["-o", "APT::Sandbox::User=root"]
    return [*command, package]


def download_and_extract(package: str, scratch: Path) -> DebianPackage:
    """`apt-get download` one package into scratch and unpack it with `dpkg-deb -x`; DataFetchError names the step."""
    download_dir = scratch / "debs" / package
    download_dir.mkdir(parents=True)
    logger.info("downloading %s", package)
    try:
        _run(_apt_download_command(package), cwd=download_dir, step=f"apt-get download {package}")
    except DataFetchError as error:
        raise DataFetchError(f"{error}. Is {package} in the configured apt sources (try `apt-get update`)?") from None
    debs = sorted(download_dir.glob("*.deb"))
    if len(debs) != 1:
        raise DataFetchError(f"apt-get download {package} produced {len(debs)} .deb files, expected exactly one")
    deb = debs[0]
    version = _run(["dpkg-deb", "--field", str(deb), "Version"], cwd=download_dir, step=f"reading {deb.name}").strip()
    root = scratch / "extracted" / package
    root.mkdir(parents=True)
    _run(["dpkg-deb", "-x", str(deb), str(root)], cwd=download_dir, step=f"extracting {deb.name}")
    return DebianPackage(name=package, version=version, root=root)


def read_copyright_file(package: DebianPackage) -> str:
    """The package's usr/share/doc/NAME/copyright; DataFetchError when it ships none (its licence is then unknown)."""
    copyright_file = package.root / "usr" / "share" / "doc" / package.name / "copyright"
    try:
        return copyright_file.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise DataFetchError(
            f"{package.name} {package.version} ships no readable usr/share/doc/{package.name}/copyright, "
            f"so the images' licence cannot be recorded: {error}"
        ) from error
