"""The sandbox image (offline build, idempotent, numpy inside) and the container pool (hardening,
replacement, recycling, stale-container cleanup, close).

Run: .venv/bin/python -m pytest -q tests/sandbox/test_image_and_pool.py
"""

from __future__ import annotations

import os
import socket
import time

import pytest

from sandbox.image import DOCKERFILE, REPOSITORY, ensure_image, image_tag
from sandbox.limits import LABEL, SandboxLimits, process_limits
from sandbox.pool import OWNER_LABEL, PoolConfig, SandboxError, SandboxPool, remove_stale_containers

pytestmark = pytest.mark.docker

LIMITS = process_limits(SandboxLimits(), test_timeout_s=2.0, problem_timeout_s=5.0)


def exec_job(source: str, *inputs: str) -> dict:
    return {"kind": "exec", "source": source, "inputs": list(inputs) or [""], "limits": LIMITS}


@pytest.fixture(scope="module")
def pool(sandbox_image):
    p = SandboxPool(PoolConfig(size=1, image=sandbox_image, recycle_after=3))
    yield p
    p.close()


def test_ensure_image_is_idempotent_and_fast(docker_client, sandbox_image):
    first = ensure_image(docker_client)
    t0 = time.monotonic()
    again = ensure_image(docker_client)
    assert again == first == image_tag("offline")
    assert again.startswith(f"{REPOSITORY}:")
    assert time.monotonic() - t0 < 10  # a directory walk and one API call, never a rebuild


def test_the_dockerfile_for_online_builds_matches_the_offline_layout():
    text = DOCKERFILE.read_text()
    assert "FROM python:3.11-slim" in text and "numpy" in text
    assert "USER 65534:65534" in text and "/opt/sandbox/runner.py" in text


def test_numpy_and_the_stdlib_work_inside_the_image(pool):
    code = "import numpy as np, json, decimal, fractions, heapq\nprint(int(np.arange(int(input())).sum()))\n"
    reply = pool.run(exec_job(code, "10\n"), timeout_s=10)
    assert reply["tests"][0]["status"] == "ok", reply
    assert reply["tests"][0]["stdout"] == "45\n"


def test_every_container_is_hardened(pool, docker_client):
    warm = next(iter(pool._all))
    attrs = docker_client.api.inspect_container(warm.container.id)
    host, config = attrs["HostConfig"], attrs["Config"]
    limits = pool.config.limits
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["Memory"] == host["MemorySwap"] == limits.memory_mb << 20
    assert host["PidsLimit"] == limits.pids
    assert host["NanoCpus"] == int(limits.cpus * 1e9)
    assert host["LogConfig"]["Type"] == "none"
    assert host["ShmSize"] == limits.shm_mb << 20
    assert host["IpcMode"] == "private"
    assert "size=64m" in host["Tmpfs"]["/tmp"] and "noexec" in host["Tmpfs"]["/tmp"]
    ulimits = {u["Name"]: u for u in host["Ulimits"]}
    assert ulimits["nofile"]["Hard"] > 0 and ulimits["fsize"]["Hard"] == limits.fsize_mb << 20
    assert ulimits["core"]["Hard"] == 0
    assert config["User"] == "65534:65534"
    assert config["Labels"][LABEL] == "1"
    assert config["Labels"][OWNER_LABEL] == f"{socket.gethostname()}:{os.getpid()}"


def test_containers_are_recycled_after_n_jobs(pool):
    before = pool.health()
    for _ in range(pool.config.recycle_after):
        assert pool.run(exec_job("print(1)"), timeout_s=10)["tests"][0]["status"] == "ok"
    after = pool.health()
    assert after["recycled"] == before["recycled"] + 1
    assert after["alive"] == 1


def test_a_container_whose_runner_dies_is_replaced_and_reported(pool):
    warm = next(iter(pool._all))
    warm.container.kill()  # the runner dies mid-life (as if the engine or the kernel killed it)
    with pytest.raises(SandboxError):
        pool.run(exec_job("print(1)"), timeout_s=10)
    assert pool.health()["replaced"] >= 1
    assert pool.run(exec_job("print(2)"), timeout_s=10)["tests"][0]["stdout"] == "2\n"


def test_the_host_deadline_kills_a_runner_that_misses_it(sandbox_image):
    # A runner that never answers (here: a job longer than the host allows) gets its container killed.
    with SandboxPool(PoolConfig(size=1, image=sandbox_image, host_grace_s=0.5)) as p:
        slow = {"kind": "exec", "source": "import time\ntime.sleep(5)\n", "inputs": [""],
                "limits": process_limits(SandboxLimits(), test_timeout_s=4.0, problem_timeout_s=4.0)}
        with pytest.raises(SandboxError) as info:
            p.run(slow, timeout_s=0.5)
        assert info.value.timeout
        assert p.health()["host_timeouts"] == 1
        assert p.run(exec_job("print(3)"), timeout_s=10)["tests"][0]["stdout"] == "3\n"


def test_stale_containers_of_a_dead_owner_are_removed(docker_client, sandbox_image):
    dead_pid = 2 ** 22 + 12345  # above pid_max: no process has it
    c = docker_client.containers.create(sandbox_image, command=["/usr/local/bin/python3", "-c", "pass"],
                                        labels={LABEL: "1", OWNER_LABEL: f"{socket.gethostname()}:{dead_pid}"})
    assert remove_stale_containers(docker_client) >= 1
    assert not docker_client.containers.list(all=True, filters={"id": c.id})


def test_close_removes_every_container(docker_client, sandbox_image):
    p = SandboxPool(PoolConfig(size=2, image=sandbox_image))
    ids = [w.container.id for w in p._all]
    assert len(ids) == 2
    p.close()
    p.close()  # idempotent
    for cid in ids:
        assert not docker_client.containers.list(all=True, filters={"id": cid})


def test_old_images_are_pruned_but_other_checkouts_newest_survive():
    """Checkouts sharing one engine build their own tags; a build keeps the newest others (no race)."""
    from sandbox import image

    class Img:
        def __init__(self, tag, created):
            self.tags, self.id, self.short_id, self.attrs = [tag], tag, tag, {"Created": created}

    class Images:
        def __init__(self):
            self.removed = []
            self.all = [Img(f"{image.REPOSITORY}:t{i}", f"2026-12-02T10:0{i}:00Z") for i in range(6)]

        def list(self, name):
            return [i for i in self.all if i.id not in self.removed]

        def remove(self, img_id):
            self.removed.append(img_id)

    class Client:
        images = Images()

    client = Client()
    image._remove_older(client, keep=f"{image.REPOSITORY}:t0")
    # t0 is current; of t1..t5 the KEEP_OTHER_IMAGES newest (t5, t4, t3) stay.
    assert sorted(client.images.removed) == [f"{image.REPOSITORY}:t1", f"{image.REPOSITORY}:t2"]


def test_a_new_stdlib_pyc_does_not_change_the_image_tag():
    """Importing a module for the first time writes a .pyc into the stdlib: the tag must not move."""
    from sandbox.image import Entry, content_hash

    base = [Entry("usr/local/lib/python3/os.py", data=b"x = 1\n")]
    grown = base + [Entry("usr/local/lib/python3/__pycache__/os.cpython-311.pyc", data=b"\x00compiled")]
    assert content_hash(base, "offline") == content_hash(grown, "offline")
    changed = [Entry("usr/local/lib/python3/os.py", data=b"x = 2\n")]
    assert content_hash(changed, "offline") != content_hash(base, "offline")
