"""README.md's two commands, run as a new user would: in a fresh clone, on a fresh data directory."""

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
NESTED = "PREFLAB_TEST_INSIDE_FRESH_CLONE"


def readme_commands() -> tuple[str, str]:
    """The first two lines of README.md's first code block: start Preflab, run the tests."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```(?:bash|sh)\n(.*?)```", text, re.S)
    assert block, "README.md has no command block"
    lines = [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]
    return lines[0], lines[1]


def test_readme_opens_with_the_commands_and_ci_runs_the_test_one():
    start, tests = readme_commands()
    assert "preflab up" in start and "pytest" in tests
    assert text_before_first_block().count("\n") < 12, "the commands must come first in README.md"
    assert tests in (ROOT / ".ci" / "run").read_text()


def text_before_first_block() -> str:
    return (ROOT / "README.md").read_text().split("```", 1)[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(bool(os.environ.get(NESTED)), reason="already running inside the fresh-clone test")
def test_readme_commands_work_in_a_fresh_clone(tmp_path):
    start, tests = readme_commands()
    clone = tmp_path / "preflab"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFLAB_", "VIRTUAL_ENV"))}
    env.update(PREFLAB_DATA_DIR=str(tmp_path / "data"), PREFLAB_PORT=str(port))
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)

    log = (tmp_path / "up.log").open("w+")
    server = subprocess.Popen(start, shell=True, cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            assert server.poll() is None, f"`{start}` exited:\n{Path(log.name).read_text()[-3000:]}"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            pytest.fail(f"Preflab did not answer within 10 minutes:\n{Path(log.name).read_text()[-3000:]}")
        output = Path(log.name).read_text()
        password = re.search(r"password: (\S+)", output).group(1)
        assert (tmp_path / "data" / "models" / "SmolLM2-135M-Instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf").exists()

        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as browser:
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/login").text).group(1)
            browser.post("/login", data={"username": "admin", "password": password, "csrf_token": csrf})
            home = browser.get("/")
            assert home.status_code == 200 and "Demo: InstructGPT use cases" in home.text
            projects = browser.get("/api/v1/projects").json()["items"]
            assert projects[0]["prompt_count"] == 9
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)

    # The test command, narrowed to one file: the whole suite already runs around this test.
    result = subprocess.run(f"{tests} -q tests/test_smoke.py", shell=True, cwd=clone,
                            env={**env, NESTED: "1"}, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"\d+ passed", result.stdout)
