"""Start and stop an isolated JupyterLab on 127.0.0.1 for the browser tests (from the shared
browser recipe): its own config, settings and runtime folders, no news or update checks."""

import contextlib
import json
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid):
    """All descendant PIDs of pid (kernels are children of the server)."""
    out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout
    kids, todo = [], [pid]
    pairs = [tuple(map(int, line.split())) for line in out.splitlines() if line.strip()]
    while todo:
        parent = todo.pop()
        for c, pp in pairs:
            if pp == parent:
                kids.append(c)
                todo.append(c)
    return kids


@contextlib.contextmanager
def jupyter_lab(root_dir, log_path=None, timeout=60, extra_env=None, settings=None, args=()):
    """settings: more user settings by plugin ("notebook-extension/tracker": {...}), merged;
    args: more command-line options for `jupyter lab`."""
    port, token = free_port(), secrets.token_hex(16)
    home = pathlib.Path(tempfile.mkdtemp(prefix="brlab-"))
    user_settings = {
        # no news / update toasts covering the notebook
        "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
        # never ask "Select Kernel": start the notebook's kernelspec
        "notebook-extension/tracker": {"autoStartDefaultKernel": True},
    }
    for name, value in (settings or {}).items():
        user_settings[name] = {**user_settings.get(name, {}), **value}
    for name, value in user_settings.items():
        f = home / "user-settings" / "@jupyterlab" / f"{name}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(value))
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "IPYTHONDIR": str(home / "ipython"),
        "JUPYTER_PLATFORM_DIRS": "1",
        **(extra_env or {}),  # may replace the folders above (a second server of one user)
    }
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        "--ServerApp.allow_root=True",
        "--ServerApp.terminals_enabled=False",
        "--LabApp.extension_manager=readonly",
        "--ServerApp.open_browser=False",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        f"--LabApp.user_settings_dir={home / 'user-settings'}",
        f"--LabApp.workspaces_dir={home / 'workspaces'}",
        *args,
    ]
    log = open(log_path or home / "server.log", "w")  # noqa: SIM115 (closed in finally)
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    if os.environ.get("BR_PIDFILE"):  # lets a CI wrapper reap it if pytest is killed
        with open(os.environ["BR_PIDFILE"], "a") as f:
            f.write(f"{proc.pid}\n")
    try:
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited rc={proc.returncode}, see {log.name}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise TimeoutError(f"jupyter lab not up after {timeout}s, see {log.name}")
            time.sleep(0.3)
        yield {"base": base, "token": token, "port": port, "pid": proc.pid, "log": log.name}
    finally:
        kids = children(proc.pid)  # kernels started by this server
        proc.send_signal(signal.SIGTERM)  # jupyter_server shuts its kernels down on SIGTERM
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for k in kids:  # a kernel the server left behind, by PID
            with contextlib.suppress(OSError):
                if b"ipykernel" in pathlib.Path(f"/proc/{k}/cmdline").read_bytes():
                    os.kill(k, signal.SIGKILL)
        log.close()
        if log_path:  # log kept elsewhere: drop the throwaway dirs
            shutil.rmtree(home, ignore_errors=True)


def kernel_state(lab, path):
    """execution_state of the kernel of the session for notebook `path`, or None."""
    url = f"{lab['base']}/api/sessions?token={lab['token']}"
    with urllib.request.urlopen(url, timeout=5) as r:
        for sess in json.load(r):
            if sess.get("path") == path and sess.get("kernel"):
                return sess["kernel"].get("execution_state")
    return None
