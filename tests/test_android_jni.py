"""The Android demo's native LUT path and colour pipeline, on the host JVM, against Python.

What runs here (no Android SDK needed):

* ``android_demo/app/src/main/java/dev/edgesr/demo/{LutEngine,ColorPipeline}.java`` (plain
  Java, the same files the app compiles) and ``android_demo/host/HostDriver.java`` with javac;
  ``javac -h`` generates the JNI header, which is force-included when compiling
  ``lut_jni.c`` so that a signature mismatch is a compile error;
* ``lut_jni.c`` + ``lut_baking/lut_engine.c`` with ``cc -Wall -Wextra -Werror`` into
  ``libedgesr_lut.so``, loaded by the JVM exactly as the app loads it;
* the same library once more with ``-fsanitize=address,undefined`` (recover off), run under
  the JVM with libasan preloaded: the SR-LUT and SPLUT calls and the argument checks.

Outputs are compared with ``edgesr.lut_baking.engine_numpy`` (the reference engine) bit for bit on
crops of a real photograph, with random int8 tables (every table entry can matter).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgesr.core.data import embedded_image

ROOT = Path(__file__).resolve().parents[1]
JAVA_SRC = ROOT / "android_demo/app/src/main/java/dev/edgesr/demo"
JNI_SRC = ROOT / "android_demo/app/src/main/cpp/lut_jni.c"
ENGINE_DIR = ROOT / "lut_baking"
HOST_DRIVER = ROOT / "android_demo/host/HostDriver.java"
CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC"]
SAN_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g"]


def _tools() -> tuple[str, str, str]:
    javac, java, cc = shutil.which("javac"), shutil.which("java"), shutil.which(os.environ.get("CC", "cc"))
    if not (javac and java and cc):
        pytest.skip(f"needs javac, java and a C compiler (found javac={javac}, java={java}, cc={cc})")
    if not (ENGINE_DIR / "lut_engine.c").is_file():
        pytest.skip("lut_baking/lut_engine.c not present in this checkout")
    return javac, java, cc


def _jni_includes(javac: str) -> list[str]:
    home = Path(os.environ.get("JAVA_HOME") or Path(os.path.realpath(javac)).parents[1])
    inc = home / "include"
    if not (inc / "jni.h").is_file():
        pytest.skip(f"jni.h not found under {inc} (set JAVA_HOME)")
    return [f"-I{inc}", f"-I{inc / 'linux'}"]


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    return res


class Host:
    """The compiled classes and native libraries; ``java(lib, *args)`` runs HostDriver."""

    def __init__(self, tmp: Path):
        javac, self.java_bin, cc = _tools()
        self.tmp = tmp
        classes, header_dir = tmp / "classes", tmp / "jni_headers"
        # Every .java file of the app is plain Java (the Android code is Kotlin): all compile here.
        _run([javac, "-Xlint:all", "-Werror", "-d", str(classes), "-h", str(header_dir),
              *map(str, sorted(JAVA_SRC.glob("*.java"))), str(HOST_DRIVER)])
        self.classes = classes
        header = header_dir / "dev_edgesr_demo_LutEngine.h"
        common = [*_jni_includes(javac), f"-I{ENGINE_DIR}", "-include", str(header), str(JNI_SRC), str(ENGINE_DIR / "lut_engine.c")]
        self.lib = {}
        for name, flags in (("plain", []), ("sanitized", SAN_FLAGS)):
            out = tmp / name / "libedgesr_lut.so"
            out.parent.mkdir()
            res = subprocess.run([cc, *CFLAGS, *flags, *common, "-o", str(out)], capture_output=True, text=True, timeout=120)
            if res.returncode == 0:
                self.lib[name] = out.parent
            elif name == "plain":  # warnings are errors: the plain build must compile
                raise AssertionError(f"{cc} failed on the JNI library:\n{res.stderr}")
            else:
                self.missing = f"{cc} cannot build with {' '.join(SAN_FLAGS)}: {res.stderr.strip()[:200]}"

    def java(self, *args, lib: str = "plain") -> subprocess.CompletedProcess:
        if lib not in self.lib:
            pytest.skip(getattr(self, "missing", f"no {lib} build"))
        env = dict(os.environ)
        if lib in ("sanitized", "canary"):
            cc = shutil.which(os.environ.get("CC", "cc"))
            asan = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
            if not os.path.isabs(asan) or not os.path.exists(asan):
                pytest.skip(f"{cc} has no libasan.so to preload into the JVM")
            env["LD_PRELOAD"] = asan
            # The JVM uses SIGSEGV itself and never frees some allocations: leave both to it.
            env["ASAN_OPTIONS"] = "detect_leaks=0:handle_segv=0:allow_user_segv_handler=1:abort_on_error=1"
            env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
        cmd = [self.java_bin, "-Xss4m", f"-Djava.library.path={self.lib[lib]}", "-cp", str(self.classes), "HostDriver", *map(str, args)]
        res = _run(cmd, env=env)
        assert "runtime error" not in res.stderr and "AddressSanitizer" not in res.stderr, res.stderr
        return res


@pytest.fixture(scope="module")
def host(tmp_path_factory) -> Host:
    return Host(tmp_path_factory.mktemp("android_jni"))


def _plane(h: int, w: int, y: int, x: int, saturate: bool = False) -> np.ndarray:
    """A one-channel crop of a real photo (the green channel); ``saturate`` adds 0 and 255 areas."""
    g = embedded_image("chelsea")[y : y + h, x : x + w, 1].astype(np.int32)
    if saturate:
        g = np.clip((g - 128) * 3 + 128, 0, 255)
    return np.ascontiguousarray(g.astype(np.uint8))


def _diff(a: np.ndarray, b: np.ndarray) -> str:
    d = np.abs(a.astype(np.int32) - b.astype(np.int32))
    return f"{int((d > 0).sum())} of {d.size} pixels differ, max {int(d.max())}"


def _srlut_case(host: Host, tmp: Path, scale: int, bits: int, img: np.ndarray, lib: str) -> None:
    from edgesr.lut_baking.engine_numpy import srlut_upscale

    levels = 2 ** (8 - bits) + 1
    lut = np.random.default_rng(scale * 10 + bits).integers(-127, 128, (levels**4, scale * scale), dtype=np.int8)
    lut.tofile(tmp / "lut.bin")
    img.tofile(tmp / "in.bin")
    host.java("srlut", tmp / "lut.bin", bits, scale, tmp / "in.bin", *img.shape, tmp / "out.bin", lib=lib)
    got = np.fromfile(tmp / "out.bin", dtype=np.uint8).reshape(img.shape[0] * scale, img.shape[1] * scale)
    ref = srlut_upscale(lut, bits, scale, img)
    assert np.array_equal(got, ref), f"SR-LUT x{scale} bits {bits}: {_diff(got, ref)}"


def _splut_tables(variant: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    per_branch = [4] + [4] * (4 * variant) + [16] * 4
    return [rng.integers(-127, 128, (65536, c), dtype=np.int8) for _ in range(2) for c in per_branch]


def _splut_case(host: Host, tmp: Path, variant: int, img: np.ndarray, lib: str) -> None:
    from edgesr.lut_baking.engine_numpy import splut_upscale

    luts = _splut_tables(variant, 100 + variant)
    paths = []
    for i, t in enumerate(luts):
        paths.append(tmp / f"splut{i}.bin")
        t.tofile(paths[-1])
    img.tofile(tmp / "in.bin")
    host.java("splut", variant, tmp / "in.bin", *img.shape, tmp / "out.bin", *paths, lib=lib)
    got = np.fromfile(tmp / "out.bin", dtype=np.uint8).reshape(img.shape[0] * 4, img.shape[1] * 4)
    ref = splut_upscale(luts, variant, img)
    assert np.array_equal(got, ref), f"SPLUT variant {variant}: {_diff(got, ref)}"


@pytest.mark.parametrize("scale,bits", [(2, 4), (3, 4), (4, 4), (2, 3)])
def test_srlut_jni_bit_exact_with_numpy_engine(host, tmp_path, scale, bits):
    _srlut_case(host, tmp_path, scale, bits, _plane(37, 53, 101, 150), "plain")


def test_srlut_jni_edge_values_and_tiny_images(host, tmp_path):
    _srlut_case(host, tmp_path, 4, 4, _plane(29, 31, 40, 200, saturate=True), "plain")
    _srlut_case(host, tmp_path, 3, 4, _plane(1, 7, 50, 50), "plain")  # one row: reflect repeats it


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_splut_jni_bit_exact_with_numpy_engine(host, tmp_path, variant):
    _splut_case(host, tmp_path, variant, _plane(23, 41, 120, 220, saturate=variant == 1), "plain")


def test_jni_rejects_bad_arguments(host):
    lines = host.java("errors").stdout.strip().splitlines()
    assert len(lines) == 11, lines
    for line in lines:
        assert "IllegalArgumentException" in line and line.split(": ", 2)[2], line


def test_sanitizers_asan_ubsan_under_jvm(host, tmp_path):
    """The JNI wrapper + C engine built with ASan/UBSan, run under the JVM: same results, no report."""
    _srlut_case(host, tmp_path, 4, 4, _plane(19, 27, 60, 90, saturate=True), "sanitized")
    _srlut_case(host, tmp_path, 2, 3, _plane(1, 5, 10, 10), "sanitized")
    _splut_case(host, tmp_path, 2, _plane(17, 13, 30, 300), "sanitized")
    host.java("errors", lib="sanitized")


def test_sanitizer_catches_an_overflow_under_jvm(host, tmp_path):
    """Negative control: a wrapper that writes past ``out`` must be reported by ASan in the JVM.

    (The JVM rounds direct buffers up to 8 bytes, so the planted write goes 100 bytes past.)
    """
    if "sanitized" not in host.lib:
        pytest.skip(host.missing)
    src = JNI_SRC.read_text()
    needle = 'uint8_t *out_p = direct_address(env, out, in_bytes * scale * scale, "out");'
    assert needle in src
    bad = tmp_path / "bad_jni.c"
    bad.write_text(src.replace(needle, needle + " if (out_p) out_p[in_bytes * scale * scale + 100] = 1;"))
    javac, _, cc = _tools()
    lib_dir = tmp_path / "lib"
    lib_dir.mkdir()
    _run([cc, *CFLAGS, *SAN_FLAGS, *_jni_includes(javac), f"-I{ENGINE_DIR}", str(bad), str(ENGINE_DIR / "lut_engine.c"), "-o", str(lib_dir / "libedgesr_lut.so")])
    host.lib["canary"] = lib_dir
    with pytest.raises(AssertionError, match="heap-buffer-overflow"):
        host.java("srlut", *_srlut_files(tmp_path, 2, 4, _plane(3, 4, 0, 0)), lib="canary")


def _srlut_files(tmp: Path, scale: int, bits: int, img: np.ndarray) -> list:
    lut = np.zeros(((2 ** (8 - bits) + 1) ** 4, scale * scale), dtype=np.int8)
    lut.tofile(tmp / "lut.bin")
    img.tofile(tmp / "in.bin")
    return [tmp / "lut.bin", bits, scale, tmp / "in.bin", *img.shape, tmp / "out.bin"]


@pytest.mark.parametrize("scale,color", [(2, "y"), (3, "luma_full"), (4, "y")])
def test_color_pipeline_matches_upscale_photo(host, tmp_path, scale, color):
    """ColorPipeline.upscaleLuma vs edgesr.core.evaluate.upscale_photo with the same network output.

    The network input (float32 Y/255) must be identical bit for bit; the RGB result may differ
    by one level where a value sits on a .5 rounding tie and NumPy's BLAS/SIMD evaluation
    order differs from Java's in the last bit (documented in ColorPipeline).
    """
    from edgesr.core.contract import IOContract
    from edgesr.core.evaluate import FunctionUpscaler, model_input, upscale_photo
    from edgesr.core.imresize import imresize

    img = np.ascontiguousarray(embedded_image("chelsea")[11:88, 21:112])
    h, w, _ = img.shape
    contract = IOContract(scale=scale, color=color)
    x = model_input(img, contract)
    noise = np.random.default_rng(scale).normal(0, 0.01, (h * scale, w * scale))
    net = np.clip(imresize(x[0, 0].astype(np.float64), scale) + noise, -0.05, 1.05).astype(np.float32)
    seen = []
    ref = upscale_photo(FunctionUpscaler(lambda v: (seen.append(v), net[None, None])[1], contract), img)
    img.tofile(tmp_path / "rgb.bin")
    net.astype("<f4").tofile(tmp_path / "net.bin")
    host.java("color", tmp_path / "rgb.bin", h, w, scale, color, tmp_path / "net.bin", tmp_path / "x.bin", tmp_path / "out.bin")
    java_x = np.fromfile(tmp_path / "x.bin", dtype="<f4").reshape(h, w)
    assert np.array_equal(java_x.view(np.uint32), seen[0][0, 0].view(np.uint32)), "network input differs from model_input"
    got = np.fromfile(tmp_path / "out.bin", dtype=np.uint8).reshape(h * scale, w * scale, 3)
    d = np.abs(got.astype(np.int32) - ref.astype(np.int32))
    print(f"x{scale} {color}: {_diff(got, ref)}")
    assert d.max() <= 1 and (d > 0).sum() <= 1e-4 * d.size, _diff(got, ref)


@pytest.mark.parametrize("color,scale", [("rgb", 2), ("rgb", 4), ("y", 3)])
def test_lut_photo_path_matches_upscale_photo(host, tmp_path, color, scale):
    """A whole photo through an SR-LUT the way the app's LutRunner does it (levels, JNI engine,
    colour pipeline) vs ``upscale_photo(LutUpscaler)`` in Python.

    Per-channel RGB (SR-LUT's convention) is integer end to end: identical bytes. A Y-contract
    LUT adds the chroma path: within one level on at most 1e-4 of the values.
    """
    from edgesr.lut_baking.bundle import LutBundle, LutUpscaler

    from edgesr.core.contract import IOContract
    from edgesr.core.evaluate import upscale_photo

    contract = IOContract(scale=scale, color=color, per_channel=color == "rgb")
    lut = np.random.default_rng(7 + scale).integers(-127, 128, (17**4, scale * scale), dtype=np.int8)
    img = np.ascontiguousarray(embedded_image("chelsea")[31:72, 201:254])
    ref = upscale_photo(LutUpscaler(LutBundle("srlut", scale, 4, [lut], contract)), img)
    lut.tofile(tmp_path / "lut.bin")
    img.tofile(tmp_path / "rgb.bin")
    host.java("lutphoto", tmp_path / "lut.bin", 4, scale, color, tmp_path / "rgb.bin", *img.shape[:2], tmp_path / "out.bin")
    got = np.fromfile(tmp_path / "out.bin", dtype=np.uint8).reshape(ref.shape)
    d = np.abs(got.astype(np.int32) - ref.astype(np.int32))
    print(f"{color} x{scale}: {_diff(got, ref)}")
    if color == "rgb":
        assert np.array_equal(got, ref), _diff(got, ref)
    else:
        assert d.max() <= 1 and (d > 0).sum() <= 1e-4 * d.size, _diff(got, ref)


def test_closed_form_of_the_on_device_lut_engine_test(host, tmp_path):
    """LutEngineTest (androidTest) expects a constant table c to give a flat 4c image; check that
    expectation here with the numpy engine and through the host JNI build."""
    from edgesr.lut_baking.engine_numpy import srlut_upscale

    lut = np.full((17**4, 9), 25, dtype=np.int8)
    img = (np.arange(35) * 37 % 256).astype(np.uint8).reshape(7, 5)
    assert np.array_equal(srlut_upscale(lut, 4, 3, img), np.full((21, 15), 100, np.uint8))
    lut.tofile(tmp_path / "lut.bin")
    img.tofile(tmp_path / "in.bin")
    host.java("srlut", tmp_path / "lut.bin", 4, 3, tmp_path / "in.bin", 7, 5, tmp_path / "out.bin")
    assert np.array_equal(np.fromfile(tmp_path / "out.bin", dtype=np.uint8), np.full(21 * 15, 100, np.uint8))


def test_the_apps_cmake_build_on_the_host(host, tmp_path):
    """app/src/main/cpp/CMakeLists.txt (what the NDK runs) configured and built with the host
    compiler: the repository path to lut_engine.c resolves, the flags compile, and the library
    it makes is bit-exact through the JVM."""
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake not installed")
    javac, _, _ = _tools()
    build = tmp_path / "cmake"
    jni = " ".join(_jni_includes(javac))
    _run([cmake, "-S", str(JNI_SRC.parent), "-B", str(build), f"-DCMAKE_C_FLAGS={jni}"])
    _run([cmake, "--build", str(build)])
    assert (build / "libedgesr_lut.so").is_file()
    host.lib["cmake"] = build
    _srlut_case(host, tmp_path, 3, 4, _plane(21, 33, 70, 120), "cmake")
