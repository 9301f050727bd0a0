"""The Kubernetes example (docs/kubernetes/sandbox-serve.yaml), rendered dry: its pieces fit
together (mounts, ports, Secrets' file names, the drain within the grace period), its command
line parses with the real CLI, its config loads, and the container's command, run here with
the mounts mapped to a temporary directory and the bind moved to loopback, serves a real call
to a RemoteHost with the keys laid out as the Secrets lay them out."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from host import RemoteHost
from host.cli import build_parser
from host.remote.keys import keygen
from policies import load_config
from tests.test_remote import free_port

yaml = pytest.importorskip("yaml", reason="the example's test reads YAML (PyYAML, in [test])")

MANIFEST = Path(__file__).parent.parent / "docs" / "kubernetes" / "sandbox-serve.yaml"


def _documents() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert sorted(by_kind) == ["ConfigMap", "Deployment", "Service"]
    return by_kind


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _option(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def _secret_volume(directory: Path, files: dict[str, Path]) -> None:
    """A Secret volume as the kubelet lays it out: the files in a hidden timestamped
    directory behind ``..data``, each name a symlink through it, mode 0440."""
    stamped = directory / "..2026_12_03_00_00_00.000000000"
    stamped.mkdir(parents=True)
    for name, source in files.items():
        (stamped / name).write_bytes(source.read_bytes())
        (stamped / name).chmod(0o440)
        (directory / name).symlink_to(Path("..data") / name)
    (directory / "..data").symlink_to(stamped.name)


def test_the_pieces_fit_together() -> None:
    docs = _documents()
    deployment, service, config_map = docs["Deployment"], docs["Service"], docs["ConfigMap"]
    container = _container(deployment)
    args = container["args"]
    parsed = build_parser().parse_args(args)
    assert parsed.command == "serve"
    assert container["command"] == ["sandbox"]
    # every file the command names is mounted, from a volume that exists
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    for m in mounts.values():
        assert m["name"] in volumes, m
    config_mount = mounts[parsed.config]
    assert config_mount["subPath"] in config_map["data"]
    assert volumes[config_mount["name"]]["configMap"]["name"] == config_map["metadata"]["name"]
    key_dir, key_file = parsed.server_key.rsplit("/", 1)
    assert key_file.endswith(".key_secret")  # the name sandbox keygen writes
    # the secret key reaches the server through the init container, copied with mode 0600
    # (a Secret's own files are root's, and the server refuses a key others can read)
    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
    init_mounts = {m["mountPath"]: m["name"] for m in init["volumeMounts"]}
    assert init_mounts[key_dir] == mounts[key_dir]["name"]
    assert "emptyDir" in volumes[mounts[key_dir]["name"]]
    assert "-m 0600" in init["args"][0] and init["args"][0].endswith(parsed.server_key)
    assert any("secret" in volumes[name] for name in init_mounts.values())
    assert "secret" in volumes[mounts[parsed.authorized]["name"]]
    # the ports: bind and metrics are the container's ports, the Service targets them
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert parsed.bind == f"tcp://0.0.0.0:{ports['zmq']}"
    assert parsed.metrics == f"0.0.0.0:{ports['metrics']}"
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in ports
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    # SIGTERM drains within the pod's grace period, not cut short by a SIGKILL
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert parsed.drain_timeout + 10 <= grace
    # a read-only root: /tmp (the workers' directories) is an emptyDir
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]


def test_the_containers_command_serves_a_call(tmp_path: Path) -> None:
    docs = _documents()
    container = _container(docs["Deployment"])
    root = tmp_path / "pod"
    # lay out the mounts as the kubelet would: the ConfigMap's file, the Secrets' files
    parsed = build_parser().parse_args(container["args"])
    config = root / parsed.config.lstrip("/")
    config.parent.mkdir(parents=True)
    config.write_text(docs["ConfigMap"]["data"]["sandbox.toml"])
    assert load_config(config).providers[0].name == "text"
    keys = tmp_path / "keys"
    keygen(keys, "server")
    keygen(keys, "engine")
    _secret_volume(root / "secret", {"server.key_secret": keys / "server.key_secret"})
    _secret_volume(root / parsed.authorized.lstrip("/"), {"engine.key": keys / "engine.key"})
    (root / parsed.server_key.lstrip("/")).parent.mkdir(parents=True)
    # the init container's command, run with its paths moved under the pod directory
    (init,) = docs["Deployment"]["spec"]["template"]["spec"]["initContainers"]
    script = init["args"][0].replace(" /", f" {root}/")
    subprocess.run([*init["command"], script], check=True, timeout=30)
    port, metrics = free_port(), free_port()
    args = [
        a.replace("/etc/sandbox", str(root / "etc" / "sandbox"))
        .replace("tcp://0.0.0.0:7300", f"tcp://127.0.0.1:{port}")
        .replace("0.0.0.0:9300", f"127.0.0.1:{metrics}")
        for a in container["args"]
    ]
    assert not any("0.0.0.0" in a for a in args)  # nothing here listens beyond loopback
    proc = subprocess.Popen(
        [sys.executable, "-m", "host.cli", *args], stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "serving 1 provider " in line, line
        with RemoteHost(
            f"tcp://127.0.0.1:{port}", server_key=keys / "server.key",
            client_key=keys / "engine.key_secret",
        ) as remote:  # fmt: skip
            assert remote.call("text.upper", {"text": "pod"}) == "POD"
        proc.send_signal(signal.SIGTERM)  # what the kubelet sends first
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
