"""No network attempt, DNS lookups included, from export to deploy.

onnxruntime 1.32 resolves a telemetry host name from a background thread when scipy,
sklearn or torch load after it (``embedkit/__init__.py`` sets ``ORT_DISABLE_TELEMETRY``
to stop it). The lookup happens in C, so the commands run here under an LD_PRELOAD shim
that makes ``getaddrinfo``/``gethostbyname*`` fail and ``connect``/``sendto`` to an
internet address fail, and records every such call. The child's environment has no
``ORT_DISABLE_TELEMETRY`` of its own, so embedkit's setting is what is tested.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import REPO
from tests.tiny_encoders import make_encoder

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static void record(const char *what, const char *detail) {
    const char *path = getenv("NONET_LOG");
    if (!path) return;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0) return;
    char line[512];
    int n = snprintf(line, sizeof line, "%s %s pid %d\n", what, detail ? detail : "-", getpid());
    if (write(fd, line, n) < 0) {}
    close(fd);
}
static int internet(const struct sockaddr *a) {
    return a && (a->sa_family == AF_INET || a->sa_family == AF_INET6);
}
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res) { record("getaddrinfo", node); return EAI_FAIL; }
struct hostent *gethostbyname(const char *name) { record("gethostbyname", name); return NULL; }
struct hostent *gethostbyname2(const char *name, int af) {
    record("gethostbyname2", name); return NULL; }
int gethostbyname_r(const char *name, struct hostent *ret, char *buf, size_t len,
                    struct hostent **result, int *err) {
    record("gethostbyname_r", name); *result = NULL; return ENOENT; }
int gethostbyname2_r(const char *name, int af, struct hostent *ret, char *buf, size_t len,
                     struct hostent **result, int *err) {
    record("gethostbyname2_r", name); *result = NULL; return ENOENT; }
int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    static int (*real)(int, const struct sockaddr *, socklen_t);
    if (internet(addr)) { record("connect", "inet"); errno = ENETUNREACH; return -1; }
    if (!real) real = dlsym(RTLD_NEXT, "connect");
    return real(fd, addr, len);
}
ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr,
               socklen_t len) {
    static ssize_t (*real)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
    if (internet(addr)) { record("sendto", "inet"); errno = ENETUNREACH; return -1; }
    if (!real) real = dlsym(RTLD_NEXT, "sendto");
    return real(fd, buf, n, flags, addr, len);
}
"""


@pytest.fixture(scope="module")
def nonet(tmp_path_factory):
    """Build the shim; return a function running a command under it, and its log."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or not sys.platform.startswith("linux"):
        pytest.skip("needs Linux and a C compiler to build the LD_PRELOAD shim")
    work = tmp_path_factory.mktemp("nonet")
    (work / "nonet.c").write_text(SHIM)
    lib = work / "nonet.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(work / "nonet.c"), "-ldl"],
                   check=True, capture_output=True)  # fmt: skip
    log = work / "calls.log"
    drop = ("ORT_DISABLE_TELEMETRY", "HF_HUB_OFFLINE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(LD_PRELOAD=str(lib), NONET_LOG=str(log))

    def run(*argv: str, **extra_env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *argv], capture_output=True, text=True,
                              cwd=REPO, env={**env, **extra_env}, timeout=600)  # fmt: skip

    return run, log


def test_the_shim_sees_a_lookup(nonet):
    run, log = nonet
    code = "import socket\ntry: socket.getaddrinfo('example.org', 443)\nexcept OSError: pass"
    done = run("-c", code)
    assert done.returncode == 0, done.stderr
    assert "getaddrinfo example.org" in log.read_text()
    log.unlink()


def _texts(path):
    rows = [
        {"text": f"item {i} about {topic}", "label": topic, "split": "train" if i % 4 else "test"}
        for i in range(16)
        for topic in ("cats", "code")
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_export_to_deploy_make_no_network_attempt(nonet, tmp_path):
    run, log = nonet
    folder = make_encoder("bert", tmp_path / "bert")
    data = _texts(tmp_path / "data.jsonl")
    m, s, head = (str(tmp_path / n) for n in ("m.onnx", "s.h5", "head"))
    steps = [
        ("export", f"hf:{folder}", "--out", m),
        ("extract", m, str(data), "--out", s, "--quiet"),
        ("train", s, "--head", "logreg", "--out", head),
        ("predict", head, str(data), "--out", str(tmp_path / "p.csv"), "--quiet"),
        ("deploy", head, "--out", str(tmp_path / "d.onnx")),
    ]
    for step in steps:
        done = run("-m", "embedkit", *step)
        assert done.returncode == 0, f"{step[0]}: {done.stderr[-2000:]}"
        calls = log.read_text() if log.exists() else ""
        assert calls == "", f"embedkit {step[0]} tried the network:\n{calls}"


# a script that imports onnxruntime, then embedkit, then runs the commands in-process
ORT_FIRST = """
import sys
import onnxruntime
import embedkit
from embedkit.cli import main
for step in sys.argv[1:]:
    code = main(step.split("|"))
    assert code == 0, (step, code)
"""


def test_onnxruntime_imported_before_embedkit_with_the_variable(nonet, tmp_path):
    run, log = nonet
    log.unlink(missing_ok=True)
    folder = make_encoder("bert", tmp_path / "bert")
    data = _texts(tmp_path / "data.jsonl")
    m, s = str(tmp_path / "m.onnx"), str(tmp_path / "s.h5")
    steps = [f"export|hf:{folder}|--out|{m}", f"extract|{m}|{data}|--out|{s}|--quiet",
             f"train|{s}|--head|logreg|--out|{tmp_path / 'head'}"]  # fmt: skip
    done = run("-c", ORT_FIRST, *steps, ORT_DISABLE_TELEMETRY="1")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "RuntimeWarning" not in done.stderr
    calls = log.read_text() if log.exists() else ""
    assert calls == "", f"tried the network:\n{calls}"


def test_onnxruntime_imported_before_embedkit_without_the_variable_warns(nonet):
    """onnxruntime read its environment at import: embedkit cannot stop its client then,
    so it says how to (whether a lookup follows is up to onnxruntime's thread)."""
    run, _ = nonet
    done = run("-c", "import onnxruntime\nimport embedkit")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "onnxruntime was imported before embedkit without ORT_DISABLE_TELEMETRY=1" in (
        done.stderr
    )
    assert "export ORT_DISABLE_TELEMETRY=1" in done.stderr
