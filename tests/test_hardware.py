"""Hardware-dependent divergences: conditioned on what the run detects, both outcomes tested on one CPU."""
import json
import os
import subprocess
import sys

import pytest

from gradconf.divergences import expectation
from gradconf.hardware import from_environment
from gradconf.loader import load_file
from tests.conftest import ROOT

AVX512 = frozenset({"sse2", "avx", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq"})
AVX2_ONLY = frozenset({"sse2", "avx", "avx2", "fma"})
ONEDNN_CASE = os.path.join(ROOT, "cases", "divergences", "tf_onednn_single_channel_conv.yaml")


def measured_cpu() -> bool:
    """An AMD CPU with AVX-512 (Zen 4 or later), where TF-ONEDNN-1CH was measured to show every time; on
    other AVX-512 CPUs oneDNN may choose other kernels (the entry is non-strict for that reason)."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "AuthenticAMD" in info and " avx512f" in info


@pytest.mark.parametrize("env, flags, onednn, avx512", [
    ({}, AVX512, True, True),
    ({}, AVX2_ONLY, True, False),                                # an AVX2-only CPU (the EPYC)
    ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, AVX512, True, False),       # oneDNN capped to AVX2 on this CPU
    ({"ONEDNN_MAX_CPU_ISA": "avx2_vnni"}, AVX512, True, False),  # oneDNN reads it case-insensitively
    ({"DNNL_MAX_CPU_ISA": "AVX2"}, AVX512, True, False),         # the variable's old name
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, AVX512, True, True),
    ({"TF_ENABLE_ONEDNN_OPTS": "0"}, AVX512, False, True),
    ({"TF_ENABLE_ONEDNN_OPTS": "false"}, AVX512, False, True),
    ({}, None, True, None),                                      # flags unreadable: unknown
])
def test_platform_facts_from_environment(env, flags, onednn, avx512):
    p = from_environment(env, flags, "x86_64")
    assert (p.onednn, p.onednn_avx512) == (onednn, avx512)
    assert from_environment({}, AVX512, "aarch64").onednn is False  # TensorFlow's default off x86-64


def test_onednn_divergence_applies_only_where_its_code_path_runs():
    (case,) = load_file(ONEDNN_CASE)
    shows = expectation(case, "tensorflow", from_environment({}, AVX512, "x86_64"))
    assert shows.applies and not shows.strict and "non-strict" in shows.why and "AVX-512 usable" in shows.why
    unknown = expectation(case, "tensorflow", from_environment({}, None, "x86_64"))
    assert unknown.applies and not unknown.strict
    for env, flags in (({}, AVX2_ONLY), ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, AVX512), ({"TF_ENABLE_ONEDNN_OPTS": "0"}, AVX512)):
        absent = expectation(case, "tensorflow", from_environment(env, flags, "x86_64"))
        assert not absent.applies and "TF-ONEDNN-1CH not expected here" in absent.why
    assert expectation(case, "torch") is None


def test_the_detected_onednn_state_is_tensorflows_own():
    pytest.importorskip("tensorflow")
    probe = ("from tensorflow.python.util import _pywrap_util_port as p; from gradconf.hardware import detect; "
             "print(p.IsMklEnabled(), detect().onednn)")
    for value in ("0", "1"):
        out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                             env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": value, "TF_CPP_MIN_LOG_LEVEL": "3"})
        assert out.stdout.split() == [str(value == "1")] * 2, out.stderr[-2000:]


@pytest.mark.parametrize("env", [{}, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, {"TF_ENABLE_ONEDNN_OPTS": "0"}],
                         ids=["as-detected", "avx2", "onednn-off"])
def test_the_onednn_case_passes_the_run_whichever_code_path_tensorflow_takes(env, tmp_path):
    """The real divergence, on this machine and as on an AVX2-only one: `gradconf run` exits 0 either way,
    and the records say whether the mark applied and why. Where it applies the mismatch shows (xfail)."""
    pytest.importorskip("tensorflow")
    p = subprocess.run([sys.executable, "-m", "gradconf", "run", ONEDNN_CASE, "--frameworks", "tensorflow",
                        "--out", str(tmp_path), "-q"], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    records = [r for r in json.load(open(tmp_path / "results.json"))["records"] if r["framework"] == "tensorflow"]
    (case,) = load_file(ONEDNN_CASE)
    expected = expectation(case, "tensorflow", from_environment({**os.environ, **env}))
    statuses = {r["status"] for r in records}
    if expected.applies:
        assert statuses <= {"xfail", "pass"} and all("TF-ONEDNN-1CH" in r["message"] for r in records)
        if measured_cpu() and from_environment({**os.environ, **env}).onednn_avx512:
            assert "xfail" in statuses  # on the kind of CPU it was measured on, it shows
    else:
        assert statuses == {"pass"} and all("xfail not applied: TF-ONEDNN-1CH" in r["message"] for r in records)


@pytest.mark.parametrize("flags, conforms, statuses, decision", [
    (AVX512, True, {"pass"}, "applied (non-strict)"),           # the divergence did not show: a pass, no xpass
    (AVX512, False, {"pass", "xfail"}, "applied (non-strict)"),  # it showed (in the input gradient)
    (AVX2_ONLY, True, {"pass"}, "not applied"),                   # its code path does not run: compared
    (AVX2_ONLY, False, {"pass", "fail"}, "not applied"),          # ... so a wrong result there is a failure
])
def test_both_outcomes_from_injected_platform_facts_in_the_records(flags, conforms, statuses, decision):
    from gradconf.adapters.numpy_ref import NumpyReference
    from gradconf.runner import Runner
    from tests.planted_layers import ConvDxNoRotation

    stand_in = (NumpyReference if conforms else ConvDxNoRotation)()
    stand_in.name = "tensorflow"  # the mark is keyed by framework name
    (case,) = load_file(ONEDNN_CASE)
    platform = from_environment({}, flags, "x86_64")
    records = [r for r in Runner(NumpyReference(), [stand_in], platform).run_case(case).records
               if r.framework == "tensorflow"]
    assert {r.status for r in records} == statuses
    assert all(r.divergence.startswith(f"{decision}: ") and "TF-ONEDNN-1CH" in r.divergence for r in records)


def test_tensorflow_bfloat16_is_unsupported_where_oneDNN_is_capped_below_the_cpus_avx512():
    """TensorFlow sends bfloat16 to oneDNN on an AVX-512 CPU; ONEDNN_MAX_CPU_ISA=AVX2 there leaves oneDNN no
    bfloat16 kernel. The adapter says so (`unsupported`) instead of an AbortedError or a segfault."""
    capped = from_environment({"ONEDNN_MAX_CPU_ISA": "AVX2"}, AVX512, "x86_64")
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in capped.tf_bfloat16_blocked()
    for fine in (from_environment({}, AVX512, "x86_64"), from_environment({}, AVX2_ONLY, "x86_64"),
                 from_environment({"ONEDNN_MAX_CPU_ISA": "AVX2", "TF_ENABLE_ONEDNN_OPTS": "0"}, AVX512, "x86_64")):
        assert fine.tf_bfloat16_blocked() is None


def test_a_bfloat16_case_under_a_capped_onednn_is_unsupported_not_an_error(tmp_path):
    pytest.importorskip("tensorflow")
    if not (measured_cpu() or _avx512_here()):
        pytest.skip("needs an AVX-512 CPU to cap")
    case = os.path.join(ROOT, "cases", "layers", "half_bias_rounding_bf16.yaml")
    p = subprocess.run([sys.executable, "-m", "gradconf", "run", case, "--frameworks", "tensorflow", "--out",
                        str(tmp_path), "-q"], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "ONEDNN_MAX_CPU_ISA": "AVX2"})
    records = [r for r in json.load(open(tmp_path / "results.json"))["records"] if r["framework"] == "tensorflow"]
    assert [r["status"] for r in records] == ["unsupported"] and "ONEDNN_MAX_CPU_ISA" in records[0]["message"]
    assert p.returncode == 1 and "nothing was compared" in p.stderr  # TensorFlow was the only framework asked


def _avx512_here() -> bool:
    return bool(from_environment({}).cpu_flags and {"avx512f", "avx512bw", "avx512vl", "avx512dq"}
                <= from_environment({}).cpu_flags)
