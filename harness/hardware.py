"""What this run detects about the machine: the facts that decide whether a hardware-dependent
divergence (docs/divergences.md) can show. Read from the CPU's flags and the environment the
frameworks read at start-up; no framework is imported.

TensorFlow's oneDNN ops are on by default on x86-64 (TF_ENABLE_ONEDNN_OPTS=0 turns them off), and
oneDNN picks its kernels by the CPU's instruction set, capped by ONEDNN_MAX_CPU_ISA (or its old name
DNNL_MAX_CPU_ISA). Measured (TF 2.21, AMD Zen 4): TF-ONEDNN-1CH shows with every AVX-512 cap and with
none, and not with ONEDNN_MAX_CPU_ISA=AVX2 or TF_ENABLE_ONEDNN_OPTS=0 — as on an AVX2-only CPU.
"""
from __future__ import annotations

import functools
import os
import platform as _platform
from dataclasses import dataclass

# ONEDNN_MAX_CPU_ISA values below AVX-512 (oneDNN reads them case-insensitively).
_BELOW_AVX512 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2"}
_AVX512_CORE = {"avx512f", "avx512bw", "avx512vl", "avx512dq"}  # what oneDNN's avx512_core kernels need


@dataclass(frozen=True)
class Platform:
    machine: str                        # "x86_64", "aarch64", ...
    cpu_flags: frozenset[str] | None    # None: not readable here (not Linux)
    onednn_opts: str | None             # TF_ENABLE_ONEDNN_OPTS as set, or None
    isa_cap: str | None                 # ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA) as set, or None

    @property
    def onednn(self) -> bool:
        """Whether TensorFlow runs its oneDNN ops (TensorFlow's own rule: on by default on x86-64)."""
        value = (self.onednn_opts or "").strip().lower()
        if value in ("0", "false"):
            return False
        if value in ("1", "true"):
            return True
        return self.machine.lower() in ("x86_64", "amd64")

    @property
    def onednn_avx512(self) -> bool | None:
        """Whether oneDNN may pick AVX-512 kernels; None when the CPU's flags cannot be read."""
        if self.isa_cap and self.isa_cap.strip().upper() in _BELOW_AVX512:
            return False
        if self.cpu_flags is None:
            return None
        return _AVX512_CORE <= self.cpu_flags

    def tf_bfloat16_blocked(self) -> str | None:
        """Why TensorFlow cannot run bfloat16 here, or None. TensorFlow sends bfloat16 ops to oneDNN when the
        CPU has AVX-512; capped below it (ONEDNN_MAX_CPU_ISA=AVX2 on such a CPU), oneDNN has no bfloat16
        kernel, and TensorFlow fails them (measured, TF 2.21: AbortedError "could not create a primitive
        descriptor" in Conv2D, a segfault in MatMul). An AVX2-only CPU never sends them there."""
        if self.onednn and self.onednn_avx512 is False and self.cpu_flags and _AVX512_CORE <= self.cpu_flags:
            return (f"TensorFlow sends bfloat16 ops to oneDNN on this AVX-512 CPU, but ONEDNN_MAX_CPU_ISA="
                    f"{self.isa_cap} leaves oneDNN no bfloat16 kernel: TensorFlow fails them here (AbortedError, "
                    f"or a segfault in MatMul); unset it, or set TF_ENABLE_ONEDNN_OPTS=0")
        return None

    def describe(self) -> str:
        avx = {True: "AVX-512 usable", False: "no AVX-512", None: "AVX-512 unknown"}[self.onednn_avx512]
        cap = f", ONEDNN_MAX_CPU_ISA={self.isa_cap}" if self.isa_cap else ""
        opts = f", TF_ENABLE_ONEDNN_OPTS={self.onednn_opts}" if self.onednn_opts is not None else ""
        return f"{self.machine}, oneDNN {'on' if self.onednn else 'off'}, {avx}{cap}{opts}"

    def to_dict(self) -> dict:
        return {"machine": self.machine, "onednn": self.onednn, "onednn_avx512": self.onednn_avx512,
                "isa_cap": self.isa_cap, "onednn_opts": self.onednn_opts}


def _cpu_flags() -> frozenset[str] | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def from_environment(env=None, cpu_flags: frozenset[str] | None | str = "read", machine: str | None = None) -> Platform:
    """The facts for `env` (default os.environ); tests pass their own env and flags."""
    env = os.environ if env is None else env
    return Platform(machine or _platform.machine(), _cpu_flags() if cpu_flags == "read" else cpu_flags,
                    env.get("TF_ENABLE_ONEDNN_OPTS"), env.get("ONEDNN_MAX_CPU_ISA") or env.get("DNNL_MAX_CPU_ISA"))


@functools.lru_cache(maxsize=1)
def detect() -> Platform:
    """This process's facts, read once: the frameworks read these variables once too, at start-up."""
    return from_environment()
