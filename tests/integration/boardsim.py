"""A real "board" for `kabuild install` tests and `make demo-install`: a container running a real sshd
and a real pacman, booted by containers/board/board-firmware from /boot/extlinux/extlinux.conf.

- /boot is a host directory bind-mounted into the container (a small tmpfs for the full-/boot test),
  so it survives reboots as a board's boot partition does;
- pacman runs packages' hooks; a kernel package's dependencies (coreutils, kmod, mkinitcpio) are
  provided by the stand-in package kabuild-board-standin, which owns /usr/bin/mkinitcpio, a
  mkinitcpio STAND-IN (containers/board/mkinitcpio-standin) writing the image a preset names;
- :meth:`BoardSim.factory_reset` puts a board back as it left the factory (a new container from the
  image, /boot rewritten) so that a test module shares one board;
- /run is a fresh tmpfs at every start, as on a board;
- reboot = the container's PID 1 ends and the restart policy starts it again; the power-cycle hook
  is `docker restart`;
- ssh: the engines run without a bridge, so the board shares the host's network and its sshd listens
  on a fixed 127.0.0.1 port; a client key made here, the board's host key read through docker
  (not over the network) into a known_hosts file.

Run as a script (`python tests/integration/boardsim.py up DIR NAME ARCH PORT`) it starts the demo's
board (`make demo-install`; fleet/demo.yaml's install: block names the same port and key files).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "containers" / "board"
SOCKET = "unix:///var/run/docker.sock"
FACTORY_RELEASE = "6.0.0-factory"

# what an install may change on a board: compared before and after a refused or rolled-back install
SNAPSHOT = ("/boot", "/var/lib/pacman", "/usr/lib/modules", "/etc/mkinitcpio.d", "/usr/share/libalpm/hooks",
            "/var/lib/kabuild", "/var/cache/kabuild")

FACTORY_CONF = """\
# extlinux.conf as the board vendor shipped it
DEFAULT factory
TIMEOUT 30
MENU TITLE board boot menu

LABEL factory
    MENU LABEL factory kernel
    KERNEL /vmlinuz-factory
    INITRD /initramfs-factory.img
    FDTDIR /dtbs-factory
    APPEND root=/dev/mmcblk0p2 rw console=ttyS2,1500000
"""


def image_tag() -> str:
    h = hashlib.sha256()
    for p in sorted(RECIPE.iterdir()):
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return f"kabuild/board-x86_64:{h.hexdigest()[:16]}"


def ensure_image(client: docker.DockerClient) -> str:
    """The board image on the local engine: imported from a cached rootfs, built once with mmdebstrap."""
    tag = image_tag()
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    cache = Path.home() / ".cache" / "kabuild" / "board"
    cache.mkdir(parents=True, exist_ok=True)
    tar = cache / f"board-{tag.rsplit(':', 1)[1]}.tar"
    if not tar.is_file():
        subprocess.run(["bash", str(RECIPE / "mkrootfs.sh"), str(tar)], check=True, timeout=1800,
                       capture_output=True)
    repo, name = tag.rsplit(":", 1)
    subprocess.run(["docker", "-H", SOCKET, "import", "--change", 'CMD ["/usr/local/sbin/board-firmware"]',
                    "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    str(tar), f"{repo}:{name}"], check=True, timeout=600, capture_output=True)
    return tag


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_factory_boot(boot: Path) -> None:
    (boot / "extlinux").mkdir(parents=True, exist_ok=True)
    (boot / "dtbs-factory").mkdir(exist_ok=True)
    (boot / "vmlinuz-factory").write_text(f"release={FACTORY_RELEASE}\n")
    (boot / "initramfs-factory.img").write_text("factory initramfs\n")
    (boot / "dtbs-factory" / "board.dtb").write_text("factory device tree\n")
    (boot / "extlinux" / "extlinux.conf").write_text(FACTORY_CONF)


@dataclass
class BoardSim:
    client: docker.DockerClient
    name: str
    base: Path  # holds boot/, the ssh keys and known_hosts
    port: int
    container: object = None

    @property
    def boot(self) -> Path:
        return self.base / "boot"

    @property
    def identity(self) -> Path:
        return self.base / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.base / "known_hosts"

    @property
    def power_cycle(self) -> list[str]:
        return ["docker", "-H", SOCKET, "restart", "-t", "0", self.name]

    def factory_reset(self, *, boot_size: str | None = None, arch: str | None = None) -> BoardSim:
        """A new container from the image (a fresh root filesystem) and /boot as the factory wrote it;
        ``boot_size`` makes /boot a tmpfs of that size (a full boot partition)."""
        self.remove()
        if os.path.ismount(self.boot):
            subprocess.run(["umount", str(self.boot)], check=True)
        shutil.rmtree(self.boot, ignore_errors=True)
        self.boot.mkdir(parents=True)
        if boot_size:
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={boot_size}", "tmpfs", str(self.boot)], check=True)
        return self.start(arch=arch)

    def close(self) -> None:
        self.remove()
        if os.path.ismount(self.boot):
            subprocess.run(["umount", str(self.boot)], check=False)

    def start(self, *, arch: str | None = None) -> BoardSim:
        tag = ensure_image(self.client)
        self.boot.mkdir(parents=True, exist_ok=True)
        if not (self.boot / "extlinux" / "extlinux.conf").exists():
            write_factory_boot(self.boot)
        if not self.identity.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.identity)], check=True)
        env = {"BOARD_SSH_PORT": str(self.port), "BOARD_SSH_LISTEN": "127.0.0.1"}
        if arch:
            env["BOARD_ARCH"] = arch
        self.container = self.client.containers.run(
            tag, name=self.name, detach=True, restart_policy={"Name": "always"}, environment=env,
            tmpfs={"/run": "rw,mode=755"}, volumes={str(self.boot): {"bind": "/boot", "mode": "rw"}},
            network_mode="host", labels={"org.kabuild.board": "1"})
        pub = self.identity.with_suffix(".pub").read_bytes()
        self.put("/root/.ssh/authorized_keys", pub, mode=0o600)
        host_key = self.wait_exec("cat /etc/ssh/ssh_host_ed25519_key.pub").split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_key[0]} {host_key[1]}\n")
        self.wait_ssh()
        return self

    def put(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            info = tarfile.TarInfo(Path(path).name)
            info.size, info.mode = len(data), mode
            t.addfile(info, io.BytesIO(data))
        self.container.put_archive(str(Path(path).parent), buf.getvalue())  # type: ignore[attr-defined]

    def exec(self, script: str) -> tuple[int, str]:
        c = self.client.containers.get(self.name)
        code, out = c.exec_run(["sh", "-c", script])
        return code, out.decode("utf-8", "replace")

    def wait_exec(self, script: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                code, out = self.exec(script)
                if code == 0:
                    return out
            except docker.errors.APIError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"board {self.name}: `{script}` did not succeed in {timeout}s")
            time.sleep(0.5)

    def ssh_argv(self) -> list[str]:
        return ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5",
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "IdentitiesOnly=yes", "-i",
                str(self.identity), "-p", str(self.port), "root@127.0.0.1"]

    def wait_ssh(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            r = subprocess.run([*self.ssh_argv(), "uname -r"], capture_output=True, text=True, timeout=30)
            if r.returncode == 0:
                return r.stdout.strip()
            if time.monotonic() > deadline:
                raise AssertionError(f"board {self.name}: no ssh in {timeout}s: {r.stderr}")
            time.sleep(0.5)

    def release(self) -> str:
        return self.wait_exec("cat /run/board/release").strip()

    def installed(self, name: str) -> str | None:
        code, out = self.exec(f"pacman -Q {name}")
        return out.split()[1] if code == 0 else None

    def snapshot(self, *dirs: str) -> dict[str, str]:
        """Every file under ``dirs`` on the board with its sha256 (and every directory)."""
        dirs = dirs or SNAPSHOT
        script = " ".join(dirs)
        out = self.wait_exec(f"for d in {script}; do [ -e $d ] || continue; find $d -type d | sed 's/$/ DIR/'; "
                             f"find $d -type f -exec sha256sum {{}} +; done")
        snap = {}
        for line in out.splitlines():
            if line.endswith(" DIR"):
                snap[line[:-4]] = "dir"
            elif line.strip():
                digest, path = line.split(None, 1)
                snap[path] = digest
        return snap

    def install_block(self, *, heartbeat_timeout: int = 20, power_cycle: bool = True, backup: str = "",
                      fdt: str = "") -> str:
        lines = textwrap.dedent(f"""\
            install:
              ssh: root@127.0.0.1
              port: {self.port}
              boot: extlinux
              known_hosts: {self.known_hosts}
              identity: {self.identity}
              connect_timeout: 5
              heartbeat_timeout: {heartbeat_timeout}
              min_free_mb: 0
            """)
        if backup:
            lines += f"  backup: {backup}\n"
        if fdt:
            lines += f"  fdt: {fdt}\n"
        if power_cycle:
            lines += "  power_cycle: [" + ", ".join(f'"{a}"' for a in self.power_cycle) + "]\n"
        return lines

    def remove(self) -> None:
        try:
            self.client.containers.get(self.name).remove(force=True)
        except docker.errors.NotFound:
            pass


def main(argv: list[str]) -> int:
    """`up DIR NAME ARCH PORT`: the demo's board, kept across runs (a new container starts from the factory state)."""
    if len(argv) != 5 or argv[0] != "up":
        print("usage: boardsim.py up DIR NAME ARCH PORT", file=sys.stderr)
        return 2
    base, name, arch, port = Path(argv[1]).resolve(), argv[2], argv[3], int(argv[4])
    client = docker.DockerClient(base_url=SOCKET)
    board = BoardSim(client, name, base, port)
    try:
        container = client.containers.get(name)
        if container.status != "running":
            container.start()
        board.container = container
        board.wait_ssh()
        print(f"board {name} is up (127.0.0.1:{port}, runs {board.release()})")
        return 0
    except docker.errors.NotFound:
        pass
    shutil.rmtree(base, ignore_errors=True)
    board.start(arch=arch)
    print(f"board {name} started from the factory state (127.0.0.1:{port}, runs {board.release()}, arch {arch})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
