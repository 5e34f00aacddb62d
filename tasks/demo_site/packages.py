"""The installed distributions' documentation, read from their metadata: long descriptions and license files."""

from __future__ import annotations

import importlib.metadata as importlib_metadata
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

LICENSE_PREFIXES = ("LICENSE", "LICENCE", "COPYING", "NOTICE")


@dataclass(frozen=True)
class LicenseFile:
    path: str  # as listed in the distribution's RECORD, e.g. "foo-1.0.dist-info/licenses/LICENSE"
    text: str

    @property
    def slug(self) -> str:
        # The dist-info directory name carries the version; drop it so URLs stay stable across upgrades.
        parts = PurePosixPath(self.path).parts
        if parts and parts[0].endswith(".dist-info"):
            parts = parts[1:]
        if len(parts) > 1 and parts[0] == "licenses":
            parts = parts[1:]
        return re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(parts)).strip("-").lower() or "license"


@dataclass(frozen=True)
class PackageDoc:
    name: str  # normalised (PEP 503)
    display_name: str
    version: str
    summary: str
    home_page: str
    description: str
    content_type: str  # media type only, e.g. text/markdown
    licenses: tuple[LicenseFile, ...] = ()

    @property
    def path(self) -> str:
        return f"/packages/{self.name}/"

    def license_path(self, lic: LicenseFile) -> str:
        return f"/packages/{self.name}/license/{lic.slug}.html"

    @property
    def letter(self) -> str:
        first = self.name[0]
        return first if first.isalpha() else "0-9"


def normalise_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class PackageCollector:
    """Reads the installed distributions' metadata into `PackageDoc`s, sorted and deduplicated by name."""

    def collect(self, max_packages: int = 0) -> tuple[list[PackageDoc], int]:
        """Return (packages, skipped): the first `max_packages` (0 = all) with a description, by name."""
        packages: list[PackageDoc] = []
        skipped = 0
        for dist in self._unique_distributions():
            doc = self._read(dist)
            if doc is None:
                skipped += 1
                continue
            packages.append(doc)
            if max_packages and len(packages) >= max_packages:
                break
        return packages, skipped

    @staticmethod
    def _unique_distributions() -> list[importlib_metadata.Distribution]:
        # The first occurrence on sys.path wins, as it does for imports; sorting is stable so that holds.
        by_name: dict[str, importlib_metadata.Distribution] = {}
        for dist in importlib_metadata.distributions():
            name = dist.metadata.get("Name")
            if name:
                by_name.setdefault(normalise_name(name), dist)
        return [by_name[name] for name in sorted(by_name)]

    def _read(self, dist: importlib_metadata.Distribution) -> PackageDoc | None:
        meta = dist.metadata
        description = _description(meta)
        if not description:
            return None
        return PackageDoc(
            name=normalise_name(meta["Name"]),
            display_name=meta["Name"],
            version=meta.get("Version") or "",
            summary=(meta.get("Summary") or "").strip(),
            home_page=_home_page(meta),
            description=description,
            content_type=_media_type(meta.get("Description-Content-Type")),
            licenses=self._licenses(dist),
        )

    @staticmethod
    def _licenses(dist: importlib_metadata.Distribution) -> tuple[LicenseFile, ...]:
        found: dict[str, LicenseFile] = {}
        for entry in dist.files or []:
            if not PurePosixPath(str(entry)).name.upper().startswith(LICENSE_PREFIXES):
                continue
            try:
                text = entry.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue  # listed in RECORD but missing, or not text: nothing to publish
            if text.strip():
                lic = LicenseFile(path=str(entry).replace("\\", "/"), text=text)
                found.setdefault(lic.slug, lic)
        return tuple(found[slug] for slug in sorted(found))


def _description(meta: Any) -> str:
    # Metadata 2.1+ keeps the description in the message body; older files use a folded header.
    body = meta.get_payload()
    text = body if isinstance(body, str) and body.strip() else _unfold(meta.get("Description") or "")
    text = text.strip()
    return "" if text == "UNKNOWN" else text


def _unfold(value: str) -> str:
    # setuptools folds continuation lines with 8 spaces or "       |" (7 spaces and a bar).
    lines = value.splitlines()
    rest = [line[8:] if line.startswith(("        ", "       |")) else line for line in lines[1:]]
    return "\n".join(lines[:1] + rest)


def _home_page(meta: Any) -> str:
    if meta.get("Home-page") and meta["Home-page"] != "UNKNOWN":
        return meta["Home-page"].strip()
    for entry in meta.get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if label.strip().lower().replace("-", "").replace(" ", "") in {"homepage", "home", "source"}:
            return url.strip()
    return ""


def _media_type(value: str | None) -> str:
    return (value or "text/plain").split(";")[0].strip().lower() or "text/plain"
