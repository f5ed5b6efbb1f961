"""The lower bounds written in the pyproject files, as pins; and checks of the built distributions.

``hack/min-deps.sh`` runs this with any Python >= 3.11 (standard library only):

    python hack/min_deps.py pins           name==bound, one a line: every third-party requirement
                                           (dependencies and every extra) of the core and plugins
    python hack/min_deps.py build-pins     the same for their [build-system] requires
    python hack/min_deps.py check-dists D  the wheels and sdists in folder D, against the sources

A lower bound is the version of ``>=``, ``~=`` or ``==``. A requirement without one is an error:
its minimum could not be tested. When several files name one package, the highest bound wins (a
lower pin would break the file that asks for more). Our own distributions (``mclease-*``) are not
pinned: they are the wheels under test.

``check-dists`` holds every distribution to the packaging rules: a wheel and an sdist per project,
the project's LICENSE in both (byte for byte), the version of the pyproject in both, no tests in
either (the tests stay in the repository; see MANIFEST.in), and nothing built from
plugins/_template.
"""

from __future__ import annotations

import re
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
USAGE = "usage: python hack/min_deps.py pins | build-pins | check-dists FOLDER"
OWN_PREFIX = "mclease-"
REQUIREMENT = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*"
    r"(?P<specifiers>[^;]*?)\s*(?P<marker>;.*)?$"
)
LOWER_BOUND = re.compile(r"^(?:>=|~=|==)\s*(?P<version>[0-9][0-9A-Za-z.+!-]*)$")


class MinDepsError(Exception):
    """A pyproject or a distribution breaks a rule; the message says which and how to fix it."""


@dataclass(frozen=True)
class Project:
    folder: Path
    name: str
    version: str
    requirements: tuple[str, ...]
    build_requirements: tuple[str, ...]

    @property
    def wheel_stem(self) -> str:
        return f"{normalized(self.name).replace('-', '_')}-{self.version}"

    def describe(self) -> str:
        return str((self.folder / "pyproject.toml").relative_to(ROOT))


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def projects() -> list[Project]:
    """The core and every plugin distribution (plugins/mclease_*; the template is no project)."""
    folders = [ROOT, *sorted(ROOT.glob("plugins/mclease_*/"))]
    return [read_project(folder) for folder in folders if (folder / "pyproject.toml").is_file()]


def read_project(folder: Path) -> Project:
    data = tomllib.loads((folder / "pyproject.toml").read_text())
    project = data["project"]
    extras = project.get("optional-dependencies", {}).values()
    requirements = [*project.get("dependencies", []), *(r for extra in extras for r in extra)]
    return Project(
        folder=folder,
        name=project["name"],
        version=project["version"],
        requirements=tuple(requirements),
        build_requirements=tuple(data.get("build-system", {}).get("requires", [])),
    )


def lower_bound(requirement: str, where: str) -> tuple[str, str, str]:
    """``(normalized name, lower bound, marker)`` of one requirement string."""
    match = REQUIREMENT.match(requirement)
    if match is None:
        raise MinDepsError(f"{where}: cannot read requirement {requirement!r}")
    bounds = []
    for specifier in filter(None, (s.strip() for s in match["specifiers"].split(","))):
        bound = LOWER_BOUND.match(specifier)
        if bound is not None:
            bounds.append(bound["version"])
    if not bounds:
        raise MinDepsError(
            f"{where}: {requirement!r} has no lower bound; write one (name>=X, the oldest "
            "version you tested) so hack/min-deps.sh can test it"
        )
    return normalized(match["name"]), max(bounds, key=version_key), match["marker"] or ""


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0]))


def pins(requirements: Iterator[tuple[str, str]]) -> list[str]:
    """One ``name==bound[; marker]`` per third-party package, the highest bound of any file."""
    chosen: dict[str, tuple[str, str]] = {}
    for requirement, where in requirements:
        name, bound, marker = lower_bound(requirement, where)
        if name not in chosen or version_key(bound) > version_key(chosen[name][0]):
            chosen[name] = (bound, marker)
    return [f"{name}=={bound}{marker}" for name, (bound, marker) in sorted(chosen.items())]


def runtime_requirements() -> Iterator[tuple[str, str]]:
    for project in projects():
        for requirement in project.requirements:
            if not own(requirement):
                yield requirement, project.describe()


def build_requirements() -> Iterator[tuple[str, str]]:
    for project in projects():
        for requirement in project.build_requirements:
            yield requirement, project.describe()


def own(requirement: str) -> bool:
    match = REQUIREMENT.match(requirement)
    return match is not None and normalized(match["name"]).startswith(OWN_PREFIX)


def check_dists(folder: Path) -> list[str]:
    """Every problem of the distributions in ``folder``; an empty list when all is well."""
    problems = [
        f"{path.name}: built from plugins/_template, which must never build"
        for path in folder.glob("mclease_example*")
    ]
    for project in projects():
        problems += check_wheel(project, folder / f"{project.wheel_stem}-py3-none-any.whl")
        problems += check_sdist(project, folder / f"{project.wheel_stem}.tar.gz")
    return problems


def check_wheel(project: Project, wheel: Path) -> list[str]:
    if not wheel.is_file():
        return [f"{wheel.name}: missing (built from {project.describe()}?)"]
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = f"{project.wheel_stem}.dist-info"
        license_name = f"{info}/licenses/LICENSE"
        license_text = archive.read(license_name) if license_name in names else None
        metadata = archive.read(f"{info}/METADATA").decode()
    return check_contents(project, wheel.name, names, license_text, metadata)


def check_sdist(project: Project, sdist: Path) -> list[str]:
    if not sdist.is_file():
        return [f"{sdist.name}: missing (built from {project.describe()}?)"]
    top = f"{project.wheel_stem}/"
    with tarfile.open(sdist) as archive:
        names = [member.name.removeprefix(top) for member in archive.getmembers()]
        license_text = read_member(archive, f"{top}LICENSE")
        metadata = (read_member(archive, f"{top}PKG-INFO") or b"").decode()
    problems = check_contents(project, sdist.name, names, license_text, metadata)
    problems += [
        f"{sdist.name}: {needed} missing"
        for needed in ("pyproject.toml", "README.md")
        if needed not in names
    ]
    return problems


def read_member(archive: tarfile.TarFile, name: str) -> bytes | None:
    try:
        member = archive.extractfile(name)
    except KeyError:
        return None
    return member.read() if member is not None else None


def check_contents(
    project: Project, label: str, names: list[str], license_text: bytes | None, metadata: str
) -> list[str]:
    problems = []
    if license_text != (project.folder / "LICENSE").read_bytes():
        problems.append(f"{label}: LICENSE missing or not the project's (license-files)")
    if f"\nVersion: {project.version}\n" not in metadata:
        problems.append(f"{label}: metadata version is not {project.version}")
    if "\nLicense-Expression: Apache-2.0\n" not in metadata:
        problems.append(f"{label}: metadata has no License-Expression: Apache-2.0")
    shipped_tests = [name for name in names if name.split("/")[0] in {"tests", "test"}]
    if shipped_tests:
        problems.append(f"{label}: ships tests ({shipped_tests[0]}, ...); MANIFEST.in prunes them")
    return problems


def main(argv: list[str]) -> int:
    try:
        if argv == ["pins"]:
            print("\n".join(pins(runtime_requirements())))
        elif argv == ["build-pins"]:
            print("\n".join(pins(build_requirements())))
        elif len(argv) == 2 and argv[0] == "check-dists":
            problems = check_dists(Path(argv[1]))
            for problem in problems:
                print(f"min_deps.py: {problem}", file=sys.stderr)
            return 1 if problems else 0
        else:
            print(USAGE, file=sys.stderr)
            return 2
    except MinDepsError as exc:
        print(f"min_deps.py: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
